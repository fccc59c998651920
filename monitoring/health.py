"""Is Relance healthy? Findings for `/health/`, the dashboard, the 2-minute check and `check_workers`.

Healthy means: the database answers, the cluster's heartbeat is fresh, and no device is
halted. Workers are judged down from the outside (a stale heartbeat and no cluster
status in the shared cache), because dead workers cannot report themselves.

Everything here only reads and returns findings: a GET of `/health/` or of the dashboard
changes nothing. Incidents (and their emails) are opened and closed from these findings by
the 2-minute check and `check_workers` (monitoring/checks.py).
"""

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, connection

from config import clock

logger = logging.getLogger(__name__)

HEARTBEAT_NAME = "cluster"


def heartbeat_write(details: dict | None = None) -> None:
    from monitoring.models import Heartbeat

    Heartbeat.objects.update_or_create(
        name=HEARTBEAT_NAME, defaults={"beat_at": clock.now(), "details": details or {}}
    )


def heartbeat_age_seconds() -> float | None:
    from monitoring.models import Heartbeat

    beat = Heartbeat.objects.filter(name=HEARTBEAT_NAME).values_list("beat_at", flat=True).first()
    return None if beat is None else (clock.now() - beat).total_seconds()


def wassenger_last_check() -> dict:
    """What the cluster's last 2-minute check found of Wassenger (this page calls no API).

    Shown, not judged: Wassenger being unreachable does not make Relance unhealthy (the
    senders wait and retry), but a monitor reading the page sees it.
    """
    from monitoring.models import Heartbeat

    details = Heartbeat.objects.filter(name=HEARTBEAT_NAME).values_list("details", flat=True).first()
    found = (details or {}).get("wassenger")
    return found if isinstance(found, dict) else {"ok": None, "error": "not checked yet"}


def cluster_reports_itself() -> bool:
    """Whether any django-q cluster has published its status in the shared (database) cache."""
    from django_q.status import Stat

    try:
        return bool(Stat.get_all())
    except Exception:  # a cache read failing is the same as no status
        return False


@dataclass(frozen=True)
class Workers:
    """What the heartbeat and the shared cache say of the workers."""

    heartbeat_age_seconds: float | None  # None: no heartbeat written yet
    cluster_status_published: bool

    @property
    def stale(self) -> bool:
        age = self.heartbeat_age_seconds
        return age is None or age > settings.HEALTH_HEARTBEAT_MAX_AGE_SECONDS

    @property
    def down(self) -> bool:
        """Stale, except on a first start: no heartbeat written yet while a cluster already
        reports itself, whose health check is about to run.

        A cluster reporting itself is no proof that the default one (which writes the
        heartbeat) is alive: the senders' and the number checks' clusters report themselves
        under the same name.
        """
        return self.stale and (self.heartbeat_age_seconds is not None or not self.cluster_status_published)

    @property
    def summary(self) -> str:
        age = self.heartbeat_age_seconds
        return "Workers down: " + ("no heartbeat yet" if age is None else f"last heartbeat {age:.0f} s ago")

    def as_check(self) -> dict:
        age = self.heartbeat_age_seconds
        return {
            "ok": not self.stale,
            "heartbeat_age_seconds": None if age is None else round(age, 1),
            "cluster_status_published": self.cluster_status_published,
        }


def workers_state() -> Workers:
    return Workers(heartbeat_age_seconds(), cluster_reports_itself())


def workers_check() -> dict:
    """Stale heartbeat: unhealthy. Whether that makes an incident is the checks' call."""
    return workers_state().as_check()


def database_check() -> dict:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return {"ok": True}
    except DatabaseError as error:
        logger.error("health: database unreachable: %s", error)
        return {"ok": False, "error": type(error).__name__}


def devices_check() -> dict:
    """Halted devices, and today's quota level of each (no names or phones: /health/ is public)."""
    from messaging.devices import plan_warnings
    from messaging.models import Device
    from monitoring.figures import daily_figures

    today = clock.now().date()
    levels = {row.device_id: row for row in daily_figures(today)}
    devices = []
    for device in Device.objects.order_by("pk"):
        row = levels.get(device.pk)
        devices.append(
            {
                "id": device.pk,
                "halted": device.halted_at is not None,
                # Its link to Wassenger has failed for minutes (the breaker): sends wait, none fails.
                "unreachable_since": device.link_down_since if device.unreachable(clock.now()) else None,
                "sends_today": row.sends,
                "limit": row.limit,
                "level": row.level,
                "note": "daily limit reached: sending waits for 00:00 UTC" if row.waits_for_midnight else "",
                # Information, never a reason to be unhealthy: what the plan cannot deliver.
                "session": device.session_status,
                "plan": device.plan,
                "plan_warnings": plan_warnings(device.plan),
            }
        )
    return {"ok": not any(d["halted"] for d in devices), "devices": devices}


def messages_check() -> dict:
    """How much is due now, and how much looks stuck (sending past a lease, unknown for long)."""
    from messaging.models import Message, MessageStatus

    now = clock.now()
    stuck_before = now - timedelta(seconds=settings.SENDER_LEASE_SECONDS * 2)
    return {
        "ok": True,
        "due": Message.objects.filter(status=MessageStatus.PENDING, next_attempt_at__lte=now).count(),
        "stuck": Message.objects.filter(
            status__in=[MessageStatus.SENDING, MessageStatus.UNKNOWN], updated_at__lt=stuck_before
        ).count(),
    }


def health_report() -> dict:
    """Every check, and whether the whole is healthy (the reasons when it is not)."""
    database = database_check()
    if not database["ok"]:
        return {"healthy": False, "reasons": ["database unreachable"], "checks": {"database": database}}
    checks = {
        "database": database,
        "workers": workers_check(),
        "devices": devices_check(),
        "messages": messages_check(),
        "wassenger": wassenger_last_check(),
    }
    reasons = []
    if not checks["workers"]["ok"]:
        reasons.append(
            f"workers down: heartbeat older than {settings.HEALTH_HEARTBEAT_MAX_AGE_SECONDS:.0f} s"
        )
    if not checks["devices"]["ok"]:
        reasons.append("a device is halted")
    if any(d["unreachable_since"] for d in checks["devices"]["devices"]):
        reasons.append("a device cannot reach Wassenger")
    return {"healthy": not reasons, "reasons": reasons, "checks": checks}
