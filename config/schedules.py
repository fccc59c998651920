"""Every periodic job of every app, declared in one place.

`manage.py setup_schedules` (messaging's command, run by `runall`, by messaging's
post-migrate hook and by each release's start script) makes the database match this list:
it creates or updates each schedule by name and never duplicates one. A new periodic job,
whichever app's task it runs, is one more entry here.
"""

from dataclasses import dataclass

from django.db import transaction
from django_q.models import Schedule

from config import clock


@dataclass(frozen=True)
class ScheduleSpec:
    name: str
    func: str
    schedule_type: str = Schedule.MINUTES
    minutes: int | None = None
    cron: str | None = None
    cluster: str | None = None


SCHEDULES: list[ScheduleSpec] = [
    # Recover what died (leases, cut-short sends), reconcile unknown sends, start/complete campaigns [8.5].
    ScheduleSpec("relance: dispatch senders", "messaging.tasks.dispatch", minutes=1),
    # Expired leases; webhook events, attempts and task results past retention (messaging/retention.py).
    ScheduleSpec("relance: cleanup", "messaging.tasks.cleanup", minutes=10),
    # Webhook events left unprocessed (cluster down on arrival, a crash, a retry due).
    ScheduleSpec("relance: process waiting webhook events", "webhooks.tasks.sweep", minutes=1),
    # Message 1 older than the reply window with no reply: window closed [7.1].
    ScheduleSpec("relance: expire reply windows", "webhooks.tasks.expire_windows", Schedule.HOURLY),
    # Heartbeat, database and Wassenger checks, quota and failure alerts [8.4].
    ScheduleSpec("relance: health check", "monitoring.tasks.health_check", minutes=2),
    # Closes the UTC day and emails its report [1.3, 2.5]: every 5 minutes, a no-op once the
    # day just ended is reported (a DAILY schedule would follow a local TIME_ZONE's summer
    # time, and a missed run would lose the day).
    ScheduleSpec("relance: daily rollover", "monitoring.tasks.daily_rollover", minutes=5),
    # The number checks' cluster says it is alive: the schedule runs on it alone
    # (settings.VERIFY_CLUSTER), so a dead one is seen even while the default one runs.
    ScheduleSpec(
        "relance: number checks heartbeat", "monitoring.tasks.verify_heartbeat", minutes=1, cluster="verify"
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
        Schedule.objects.update_or_create(
            name=spec.name, defaults=fields, create_defaults={**fields, "next_run": clock.now()}
        )
    return [spec.name for spec in specs]
