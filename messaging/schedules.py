"""Every periodic job Relance runs, declared in one place.

`setup_schedules` (run after every migrate and by the run command) makes the database
match this list: it creates or updates each schedule by name and never duplicates one.
Later work adds entries here.
"""

from dataclasses import dataclass

from django.db import transaction
from django_q.models import Schedule


@dataclass(frozen=True)
class ScheduleSpec:
    name: str
    func: str
    schedule_type: str = Schedule.MINUTES
    minutes: int | None = None
    cron: str | None = None
    cluster: str | None = None


SCHEDULES: list[ScheduleSpec] = [
    # Restart dead senders, reconcile unknown sends, start/complete campaigns [8.5].
    ScheduleSpec("relance: dispatch senders", "messaging.tasks.dispatch", minutes=1),
    # Expired leases and old task results.
    ScheduleSpec("relance: cleanup", "messaging.tasks.cleanup", minutes=10),
]


@transaction.atomic
def schedules_sync(specs: list[ScheduleSpec] | None = None) -> list[str]:
    """Create or update each declared schedule by name; return the names written."""
    specs = SCHEDULES if specs is None else specs
    for spec in specs:
        Schedule.objects.update_or_create(
            name=spec.name,
            defaults={
                "func": spec.func,
                "schedule_type": spec.schedule_type,
                "minutes": spec.minutes,
                "cron": spec.cron,
                "cluster": spec.cluster,
                "repeats": -1,
            },
        )
    return [spec.name for spec in specs]
