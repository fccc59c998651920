"""What the operator dashboard shows, each figure in a fixed number of queries.

It only reads. Campaigns in progress (counts, funnel, estimated finish) are the campaign's
own figures, read from campaigns/figures.py; here are the per-device gauges, the chart (one
GROUP BY per hour), the workers' and messages' findings from monitoring/health.py, and the
first steps of a fresh install. Nothing loops over campaigns or contacts with a query inside.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db.models import Count
from django.db.models.functions import TruncHour

from campaigns.figures import CampaignProgress, campaigns_in_progress
from campaigns.models import Campaign, CampaignStatus, Category, Contact
from messaging.devices import plan_warnings
from messaging.models import Device, Message
from monitoring.figures import DeviceFigures, daily_figures
from monitoring.health import messages_check, senders_stuck_check, workers_check

# --- Devices, chart, workers ----------------------------------------------------------------


@dataclass(frozen=True)
class Gauge:
    """Today's sends of one device against its daily limit, coloured by alert level."""

    figures: DeviceFigures
    halted_reason: str | None  # None when the device is not halted
    plan_warnings: tuple[str, ...] = ()  # what its Wassenger plan cannot deliver

    @property
    def percent(self) -> float:
        limit = self.figures.limit
        return min(100.0, round(100 * self.figures.sends / limit, 1)) if limit else 100.0


def device_gauges(*, now: datetime) -> list[Gauge]:
    halted = dict(Device.objects.filter(halted_at__isnull=False).values_list("pk", "halted_reason"))
    plans = dict(Device.objects.values_list("pk", "plan"))
    return [
        Gauge(row, halted.get(row.device_id), tuple(plan_warnings(plans.get(row.device_id, ""))))
        for row in daily_figures(now.date())
    ]


@dataclass(frozen=True)
class HourBar:
    start: datetime
    sends: int
    height: float  # percent of the busiest hour


def sends_per_hour(*, now: datetime, hours: int = 24) -> list[HourBar]:
    """Messages Wassenger accepted in each of the last `hours` UTC hours, the current one last."""
    first = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours - 1)
    sent = Message.objects.filter(sent_at__gte=first, sent_at__lte=now)
    rows = sent.annotate(hour=TruncHour("sent_at", tzinfo=UTC)).values("hour").annotate(n=Count("id"))
    by_hour = {row["hour"]: row["n"] for row in rows}
    starts = [first + timedelta(hours=i) for i in range(hours)]
    peak = max(by_hour.values(), default=0)
    return [
        HourBar(start, by_hour.get(start, 0), round(100 * by_hour.get(start, 0) / peak, 1) if peak else 0.0)
        for start in starts
    ]


@dataclass(frozen=True)
class Dashboard:
    gauges: list[Gauge]
    hours: list[HourBar]
    campaigns: list[CampaignProgress]
    workers: dict  # health.workers_check(): ok, each cluster's heartbeat (clusters), silent ones
    messages: dict  # health.messages_check(): due, stuck
    senders_stuck: list[dict] = ()  # health.senders_stuck_check()'s devices
    banners: list[str] = ()  # open incidents of a banned or unlinked number, for the top of the page

    @property
    def peak_hour(self) -> int:
        return max((bar.sends for bar in self.hours), default=0)

    @property
    def sends_last_24h(self) -> int:
        return sum(bar.sends for bar in self.hours)


def dashboard(*, now: datetime) -> Dashboard:
    return Dashboard(
        gauges=device_gauges(now=now),
        hours=sends_per_hour(now=now),
        campaigns=campaigns_in_progress(now=now),
        workers=workers_check(),
        messages=messages_check(),
        senders_stuck=senders_stuck_check()["devices"],
        banners=number_banners(),
    )


def number_banners() -> list[str]:
    """The open "number banned", "number unlinked" and "cannot reach Wassenger" incidents
    (opened by the 2-minute check)."""
    from monitoring.models import Incident

    kinds = ("number_banned", "number_unlinked", "device_unreachable")
    return list(Incident.objects.filter(kind__in=kinds, closed_at=None).values_list("summary", flat=True))


# --- First steps ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SetupStep:
    key: str  # "device", "category", "contacts", "campaign", "launch"
    done: bool


def setup_steps() -> list[SetupStep]:
    """What a fresh install still lacks, in the order an operator sets it up."""
    return [
        SetupStep("device", Device.objects.exists()),
        SetupStep("category", Category.objects.exists()),
        SetupStep("contacts", Contact.objects.exists()),
        SetupStep("campaign", Campaign.objects.exists()),
        SetupStep("launch", Campaign.objects.exclude(status=CampaignStatus.DRAFT).exists()),
    ]
