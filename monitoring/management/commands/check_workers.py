from django.core.management.base import BaseCommand

from monitoring.checks import workers_incident_sync
from monitoring.health import workers_state


class Command(BaseCommand):
    help = (
        "For cron: exit 0 when every cluster's heartbeat and the sender loops' are fresh, 1 when "
        "one is not (the admins are emailed once per outage), 2 when the database cannot be reached."
    )

    def handle(self, *args, **options):
        from django.db import DatabaseError

        try:
            workers = workers_state()
            workers_incident_sync(workers)
        except DatabaseError as error:
            self.stderr.write(f"database unreachable: {error}")
            raise SystemExit(2) from None
        for watched in workers.watched:
            age = watched.age_seconds
            seen = "never seen" if age is None else f"{age:.0f} s old"
            if watched.stale:
                self.stderr.write(f"workers down: {watched.name} heartbeat {seen}")
            else:
                self.stdout.write(f"workers alive: {watched.name} heartbeat {seen}")
        if workers.stale:
            raise SystemExit(1)
