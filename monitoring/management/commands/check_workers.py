from django.core.management.base import BaseCommand

from monitoring.health import workers_check


class Command(BaseCommand):
    help = (
        "For cron: exit 0 when the workers' heartbeat is fresh, 1 when it is not (the admins "
        "are emailed once per outage), 2 when the database cannot be reached."
    )

    def handle(self, *args, **options):
        from django.db import DatabaseError

        try:
            result = workers_check()
        except DatabaseError as error:
            self.stderr.write(f"database unreachable: {error}")
            raise SystemExit(2) from None
        age = result["heartbeat_age_seconds"]
        if result["ok"]:
            self.stdout.write(f"workers alive: heartbeat {age:.0f} s ago")
            return
        self.stderr.write(f"workers down: heartbeat {'never seen' if age is None else f'{age:.0f} s old'}")
        raise SystemExit(1)
