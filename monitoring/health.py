"""Is Relance healthy? Findings for `/health/`, the dashboard, the 2-minute check and `check_workers`.

Healthy means: the database answers, every cluster's heartbeat and the sender loops' are
fresh, no sender is stuck, and no device is halted. Workers are judged down from the
outside (a stale heartbeat), because dead workers cannot report themselves.

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

HEARTBEAT_NAME = "default"  # the default cluster's, written by its 2-minute health check

# Everything that must be seen alive, each judged by its own heartbeat: the default cluster
# (its health check, every 2 minutes), the number checks' cluster (a one-minute heartbeat task
# scheduled on it, and each number a running bulk check records, since one long job keeps
# its only worker busy) and the sender loops (their presence row, renewed every third of a
# lease; any one alive is enough). The names are what /health/ and the incidents say.
DEFAULT, VERIFY, SENDERS = HEARTBEAT_NAME, "verify", "senders"
WATCHED = (DEFAULT, VERIFY, SENDERS)


def heartbeat_write(details: dict | None = None, *, name: str = HEARTBEAT_NAME) -> None:
    from monitoring.models import Heartbeat

    Heartbeat.objects.update_or_create(name=name, defaults={"beat_at": clock.now(), "details": details or {}})


def heartbeat_beat(name: str) -> None:
    """Say `name` is alive (any process may call it), keeping its last details."""
    from monitoring.models import Heartbeat

    now = clock.now()
    if not Heartbeat.objects.filter(name=name).update(beat_at=now):
        Heartbeat.objects.get_or_create(name=name, defaults={"beat_at": now})


def heartbeat_ages() -> dict[str, float | None]:
    """Seconds since each watched one was last seen; None: never."""
    from django.db.models import Max

    from messaging.models import SenderLoop
    from monitoring.models import Heartbeat

    seen = dict(Heartbeat.objects.filter(name__in=WATCHED).values_list("name", "beat_at"))
    seen[SENDERS] = SenderLoop.objects.aggregate(last=Max("seen_at"))["last"]
    now = clock.now()
    return {name: None if seen.get(name) is None else (now - seen[name]).total_seconds() for name in WATCHED}


def heartbeat_age_seconds() -> float | None:
    return heartbeat_ages()[DEFAULT]


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
class Watched:
    """One cluster (or the sender loops) as its heartbeat shows it."""

    name: str
    age_seconds: float | None  # None: never seen
    first_start: bool  # nothing seen yet of it while a cluster already reports itself

    @property
    def stale(self) -> bool:
        return self.age_seconds is None or self.age_seconds > settings.HEALTH_HEARTBEAT_MAX_AGE_SECONDS

    @property
    def down(self) -> bool:
        """Stale, except on a first start: never seen yet while a cluster already reports
        itself (its first heartbeat is about to come)."""
        return self.stale and not (self.age_seconds is None and self.first_start)

    @property
    def summary(self) -> str:
        age = self.age_seconds
        last = "no heartbeat yet" if age is None else f"last heartbeat {age:.0f} s ago"
        return f"Workers down ({self.name}): {last}"

    def as_check(self) -> dict:
        age = self.age_seconds
        return {"ok": not self.stale, "heartbeat_age_seconds": None if age is None else round(age, 1)}


@dataclass(frozen=True)
class Workers:
    """What the heartbeats and the shared cache say of every cluster and the sender loops."""

    watched: tuple[Watched, ...]
    cluster_status_published: bool

    def of(self, name: str) -> Watched:
        return next(w for w in self.watched if w.name == name)

    @property
    def heartbeat_age_seconds(self) -> float | None:
        return self.of(DEFAULT).age_seconds

    @property
    def stale(self) -> bool:
        return any(w.stale for w in self.watched)

    @property
    def down(self) -> bool:
        return any(w.down for w in self.watched)

    def as_check(self) -> dict:
        age = self.heartbeat_age_seconds
        return {
            "ok": not self.stale,
            "heartbeat_age_seconds": None if age is None else round(age, 1),
            "cluster_status_published": self.cluster_status_published,
            "clusters": {w.name: w.as_check() for w in self.watched},
            "silent": [w.name for w in self.watched if w.stale],
        }


def workers_state() -> Workers:
    published = cluster_reports_itself()
    ages = heartbeat_ages()
    return Workers(tuple(Watched(name, ages[name], published) for name in WATCHED), published)


def workers_check() -> dict:
    """Stale heartbeat: unhealthy. Whether that makes an incident is the checks' call."""
    return workers_state().as_check()


def senders_stuck_check() -> dict:
    """Devices the pacing lets send now, with messages due for longer than
    SENDER_STUCK_SECONDS and no send in that time: the sender loops may be up, yet nothing
    goes out. A halted device, one that cannot reach Wassenger (its breaker), one waiting
    for its pause, its daily limit or its send window is waiting, not stuck."""
    from messaging.claims import devices_next_due, devices_with_sending_facts
    from messaging.models import Device
    from messaging.pacing import Action
    from messaging.sending import sender_plan

    now = clock.now()
    limit = timedelta(seconds=settings.SENDER_STUCK_SECONDS)
    ids = Device.objects.filter(halted_at=None, link_down_since=None).values_list("pk", flat=True)
    idle = [
        device.pk
        for device in devices_with_sending_facts(list(ids), now)
        if (plan := sender_plan(device, now)) is not None
        and plan.action == Action.SEND
        and (device.last_sent_at is None or now - device.last_sent_at > limit)
    ]
    if not idle:
        return {"ok": True, "devices": []}
    # The message its sender would claim next, and since when.
    stuck = [
        {"id": pk, "due_for_seconds": round((now - due_at).total_seconds())}
        for pk, due_at in devices_next_due(idle, now).items()
        if due_at is not None and now - due_at > limit
    ]
    return {"ok": not stuck, "devices": stuck}


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


# /health/ is public and unthrottled: its counts stop at this many ("at least"), so a request
# costs the same with a million messages waiting as with a thousand.
COUNT_CAP = 10_000


def count_capped(queryset) -> int:
    """How many rows `queryset` has, up to COUNT_CAP (then COUNT_CAP, read as "at least")."""
    return queryset.order_by()[:COUNT_CAP].count()


def messages_check() -> dict:
    """How much is due now, and how much looks stuck (sending past a lease, unknown for long),
    each counted up to COUNT_CAP (`due_capped` says it was reached)."""
    from messaging.models import Message, MessageStatus

    now = clock.now()
    stuck_before = now - timedelta(seconds=settings.SENDER_LEASE_SECONDS * 2)
    due = count_capped(Message.objects.filter(status=MessageStatus.PENDING, next_attempt_at__lte=now))
    stuck = Message.objects.filter(
        status__in=[MessageStatus.SENDING, MessageStatus.UNKNOWN], updated_at__lt=stuck_before
    )
    return {"ok": True, "due": due, "due_capped": due >= COUNT_CAP, "stuck": count_capped(stuck)}


def name_ok(workers: dict, name: str) -> bool:
    return workers["clusters"][name]["ok"]


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
    reasons = [
        f"workers down: {name} heartbeat older than {settings.HEALTH_HEARTBEAT_MAX_AGE_SECONDS:.0f} s"
        for name in checks["workers"]["silent"]
    ]
    if name_ok(checks["workers"], SENDERS):
        checks["senders_stuck"] = senders_stuck_check()
        reasons += [
            f"senders stuck: device {d['id']} has had messages due for {d['due_for_seconds']} s, none sent"
            for d in checks["senders_stuck"]["devices"]
        ]
    if not checks["devices"]["ok"]:
        reasons.append("a device is halted")
    if any(d["unreachable_since"] for d in checks["devices"]["devices"]):
        reasons.append("a device cannot reach Wassenger")
    return {"healthy": not reasons, "reasons": reasons, "checks": checks}
