from django.core.management.base import BaseCommand

from monitoring.checks import workers_incident_sync
from monitoring.health import workers_state


class Command(BaseCommand):
    help = (
        "For cron: exit 0 when the workers' heartbeat is fresh, 1 when it is not (the admins "
        "are emailed once per outage), 2 when the database cannot be reached."
    )

    def handle(self, *args, **options):
        from django.db import DatabaseError

        try:
            workers = workers_state()
            workers_incident_sync(workers)
        except DatabaseError as error:
            self.stderr.write(f"database unreachable: {error}")
            raise SystemExit(2) from None
        result = workers.as_check()
        age = result["heartbeat_age_seconds"]
        if result["ok"]:
            self.stdout.write(f"workers alive: heartbeat {age:.0f} s ago")
            return
        self.stderr.write(f"workers down: heartbeat {'never seen' if age is None else f'{age:.0f} s old'}")
        raise SystemExit(1)
