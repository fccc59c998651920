from django.core.management.base import BaseCommand

from config.schedules import schedules_sync


class Command(BaseCommand):
    help = "Create or update the periodic jobs declared in config/schedules.py (idempotent)."

    def handle(self, *args, **options):
        names = schedules_sync()
        if options["verbosity"]:
            self.stdout.write(f"{len(names)} schedule(s) in place: {', '.join(names) or 'none yet'}.")
