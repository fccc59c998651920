"""Every periodic job Relance runs, declared in one place.

`setup_schedules` (run after every migrate and by the run command) makes the database
match this list: it creates or updates each schedule by name and never duplicates one.
Later work adds entries here.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django_q.models import Schedule

from config import clock


def _midnight():
    from messaging.pacing import next_utc_midnight

    return next_utc_midnight(clock.now())


@dataclass(frozen=True)
class ScheduleSpec:
    name: str
    func: str
    schedule_type: str = Schedule.MINUTES
    minutes: int | None = None
    cron: str | None = None
    cluster: str | None = None
    first_run: Callable[[], datetime] | None = None  # default: now


SCHEDULES: list[ScheduleSpec] = [
    # Restart dead senders, reconcile unknown sends, start/complete campaigns [8.5].
    ScheduleSpec("relance: dispatch senders", "messaging.tasks.dispatch", minutes=1),
    # Expired leases and old task results.
    ScheduleSpec("relance: cleanup", "messaging.tasks.cleanup", minutes=10),
    # Webhook events left unprocessed (cluster down on arrival, a crash, a retry due).
    ScheduleSpec("relance: process waiting webhook events", "webhooks.tasks.sweep", minutes=1),
    # Message 1 older than the reply window with no reply: window closed [7.1].
    ScheduleSpec("relance: expire reply windows", "webhooks.tasks.expire_windows", Schedule.HOURLY),
    # Heartbeat, database and Wassenger checks, quota and failure alerts [8.4].
    ScheduleSpec("relance: health check", "monitoring.tasks.health_check", minutes=2),
    # Closes the UTC day and emails its report [1.3, 2.5].
    # DAILY from the next 00:00 UTC rather than a cron expression: no croniter needed.
    ScheduleSpec(
        "relance: daily rollover", "monitoring.tasks.daily_rollover", Schedule.DAILY, first_run=_midnight
    ),
]


@transaction.atomic
def schedules_sync(specs: list[ScheduleSpec] | None = None) -> list[str]:
    """Create or update each declared schedule by name; return the names written."""
    specs = SCHEDULES if specs is None else specs
    for spec in specs:
        fields = {
            "func": spec.func,
            "schedule_type": spec.schedule_type,
            "minutes": spec.minutes,
            "cron": spec.cron,
            "cluster": spec.cluster,
            "repeats": -1,
        }
        # create_defaults replaces defaults on creation: the first run is only set then.
        first_run = spec.first_run() if spec.first_run else clock.now()
        Schedule.objects.update_or_create(
            name=spec.name, defaults=fields, create_defaults={**fields, "next_run": first_run}
        )
    return [spec.name for spec in specs]
