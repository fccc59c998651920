"""`python manage.py wassenger_connect [--device LABEL]`: register Relance's webhook at Wassenger.

Registers the webhook (RELANCE_BASE_URL + /webhooks/wassenger/ with its secret) with the
events the device's plan sends, or updates the one already registered for that URL, and
reports the device's session and plan. Safe to run again: it never registers twice.
"""

from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _

from messaging import wassenger
from messaging.devices import device_connect, device_ensure_default
from messaging.models import Device


class Command(BaseCommand):
    help = "Register (or update) Relance's webhook at Wassenger and report the number's session and plan."

    def add_arguments(self, parser):
        parser.add_argument("--device", default="", help="The device's label (default: the default device).")

    def handle(self, *args, device: str = "", **options):
        target = Device.objects.filter(label=device).first() if device else device_ensure_default()
        if target is None:
            raise CommandError(_("No device is labelled %(label)s.") % {"label": device})
        try:
            connected = device_connect(device=target)
        except wassenger.WassengerError as error:
            raise CommandError(_("Wassenger refused: %(error)s") % {"error": error}) from error
        for line in connection_report(connected):
            self.stdout.write(line)


def connection_report(connected) -> list[str]:
    """What the command prints and the admin button tells (one wording for both)."""
    done = _("Webhook registered") if connected.created else _("Webhook updated")
    lines = [
        _("%(done)s (%(status)s), events: %(events)s")
        % {
            "done": done,
            "status": connected.webhook.status or "?",
            "events": ", ".join(connected.webhook.events),
        },
        _("WhatsApp session: %(session)s · plan: %(plan)s")
        % {"session": connected.session_status or "?", "plan": connected.plan or "?"},
    ]
    return lines + list(connected.warnings)
