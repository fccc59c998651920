"""What the operator pages show, each figure in a fixed number of queries.

Nothing here loops over campaigns or contacts with a query inside: per-campaign counts are
one GROUP BY over the messages of the campaigns on screen, the chart is one GROUP BY per
hour, and estimated finishes come from one snapshot of the devices fed to the pacing
module's own estimate (the one launch uses), queue order included.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db.models import Count, Q
from django.db.models.functions import TruncHour

from campaigns.models import Campaign, CampaignStatus, Category, Contact
from messaging import pacing
from messaging.claims import device_policy, device_state, devices_with_sending_facts
from messaging.models import Device, Message, MessageKind, MessageStatus
from monitoring.figures import DeviceFigures, daily_figures
from monitoring.health import messages_check, workers_check

# Campaigns the dashboard follows: launched and not finished.
IN_PROGRESS = (CampaignStatus.SENDING, CampaignStatus.PAUSED, CampaignStatus.SCHEDULED)
# Message 1 still to be settled: waiting, being sent, or sent with an outcome to reconcile.
OPEN_STATUSES = (MessageStatus.PENDING, MessageStatus.SENDING, MessageStatus.UNKNOWN)


# --- Per-campaign counts ----------------------------------------------------------------------


@dataclass(frozen=True)
class CampaignCounts:
    """The funnel of one campaign (recipients → … → Message 2 sent) and what is left.

    Each stage counts Message 1s that reached it or a later one: a read message was delivered.
    """

    recipients: int = 0
    sent: int = 0
    delivered: int = 0
    read: int = 0
    replied: int = 0
    message_2_sent: int = 0
    failed: int = 0
    cancelled: int = 0
    open: int = 0  # not settled yet: pending, sending, or an unknown outcome

    @property
    def settled(self) -> int:
        return self.sent + self.failed + self.cancelled

    def share(self, count: int) -> float:
        """`count` as a percentage of the recipients, for bars and the funnel."""
        return round(100 * count / self.recipients, 1) if self.recipients else 0.0

    @property
    def progress(self) -> float:
        return self.share(self.settled)

    @property
    def share_sent(self) -> float:
        return self.share(self.sent)

    @property
    def share_failed(self) -> float:
        return self.share(self.failed + self.cancelled)

    @property
    def funnel(self) -> list[tuple[str, int, float]]:
        stages = ("recipients", "sent", "delivered", "read", "replied", "message_2_sent")
        return [(stage, getattr(self, stage), self.share(getattr(self, stage))) for stage in stages]


def _stage(condition: Q) -> Count:
    return Count("id", filter=Q(kind=MessageKind.MESSAGE_1) & condition)


_COUNTS = {
    "recipients": _stage(Q()),
    "sent": _stage(Q(sent_at__isnull=False)),
    "delivered": _stage(Q(delivered_at__isnull=False) | Q(read_at__isnull=False)),
    "read": _stage(Q(read_at__isnull=False)),
    "replied": _stage(Q(replied_at__isnull=False)),
    "message_2_sent": Count("id", filter=Q(kind=MessageKind.MESSAGE_2, sent_at__isnull=False)),
    "failed": _stage(Q(status=MessageStatus.FAILED)),
    "cancelled": _stage(Q(status=MessageStatus.CANCELLED)),
    "open": _stage(Q(status__in=OPEN_STATUSES)),
}


def campaign_counts(campaign_ids: Iterable[int]) -> dict[int, CampaignCounts]:
    """Counts of each campaign, in one query; a campaign with no message gets zeros."""
    ids = list(campaign_ids)
    rows = Message.objects.filter(campaign_id__in=ids).values("campaign_id").annotate(**_COUNTS)
    found = {row.pop("campaign_id"): CampaignCounts(**row) for row in rows}
    return {pk: found.get(pk, CampaignCounts()) for pk in ids}


def failures_by_reason(campaign: Campaign, *, limit: int = 10) -> list[dict]:
    """The commonest reasons messages of the campaign failed: [{"reason", "count"}]."""
    failed = Message.objects.filter(campaign=campaign, status=MessageStatus.FAILED)
    rows = failed.values("last_error").annotate(count=Count("id")).order_by("-count", "last_error")
    return [{"reason": row["last_error"], "count": row["count"]} for row in rows[:limit]]


# --- Campaigns in progress -------------------------------------------------------------------


@dataclass(frozen=True)
class CampaignProgress:
    campaign: Campaign
    counts: CampaignCounts
    estimated_finish: datetime | None  # None: nothing left, paused, halted device, or no room at all
    note: str  # why there is no estimate: "all_sent", "paused", "halted", "no_allowance", or ""


def campaigns_in_progress(*, now: datetime) -> list[CampaignProgress]:
    campaigns = list(Campaign.objects.filter(status__in=IN_PROGRESS).select_related("device").order_by("pk"))
    counts = campaign_counts(c.pk for c in campaigns)
    finishes = _estimated_finishes(campaigns, counts, now=now)
    return [CampaignProgress(c, counts[c.pk], *finishes[c.pk]) for c in campaigns]


def _estimated_finishes(campaigns, counts, *, now) -> dict[int, tuple[datetime | None, str]]:
    """Per device, campaigns are served in id order (the sender claims the oldest Message 1),
    after every waiting Message 2: each campaign ends once the ones before it have."""
    device_ids = sorted({c.device_id for c in campaigns})
    devices = {d.pk: d for d in devices_with_sending_facts(device_ids, now)} if device_ids else {}
    message_2 = _pending_message_2(device_ids)
    ahead: dict[int, int] = defaultdict(int)
    result = {}
    for campaign in campaigns:
        device = devices[campaign.device_id]
        if campaign.status == CampaignStatus.PAUSED:
            result[campaign.pk] = (None, "paused")
            continue
        if not counts[campaign.pk].open:
            result[campaign.pk] = (None, "all_sent")
            continue
        ahead[device.pk] += counts[campaign.pk].open
        result[campaign.pk] = _finish(campaign, device, ahead[device.pk], message_2.get(device.pk, 0), now)
    return result


def _finish(campaign: Campaign, device: Device, message_1: int, message_2: int, now: datetime):
    if device.halted_at is not None:
        return None, "halted"
    start = max(campaign.starts_at or now, now)
    try:
        finish = pacing.pacing_estimate_finish(
            policy=device_policy(device),
            state=device_state(device, now),
            now=start,
            message_1=message_1,
            message_2=message_2,
        )
    except ValueError:  # the device allows no Message 1 at all (a limit of zero)
        return None, "no_allowance"
    return finish, ""


def _pending_message_2(device_ids: list[int]) -> dict[int, int]:
    pending = Message.objects.filter(
        device_id__in=device_ids, kind=MessageKind.MESSAGE_2, status=MessageStatus.PENDING
    )
    return dict(pending.values_list("device_id").annotate(count=Count("id")))


# --- Devices, chart, workers ----------------------------------------------------------------


@dataclass(frozen=True)
class Gauge:
    """Today's sends of one device against its daily limit, coloured by alert level."""

    figures: DeviceFigures
    halted_reason: str | None  # None when the device is not halted

    @property
    def percent(self) -> float:
        limit = self.figures.limit
        return min(100.0, round(100 * self.figures.sends / limit, 1)) if limit else 100.0


def device_gauges(*, now: datetime) -> list[Gauge]:
    halted = dict(Device.objects.filter(halted_at__isnull=False).values_list("pk", "halted_reason"))
    return [Gauge(row, halted.get(row.device_id)) for row in daily_figures(now.date())]


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
    workers: dict  # health.workers_check(): ok, heartbeat_age_seconds, cluster_status_published
    messages: dict  # health.messages_check(): due, stuck

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
    )


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
