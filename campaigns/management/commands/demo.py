from django.conf import settings
from django.core.management.base import BaseCommand

from campaigns.demo import demo_create
from campaigns.launch import launch_preview


class Command(BaseCommand):
    help = "Create demo data (a sandbox device with demo pacing, contacts, a ready campaign). Idempotent."

    def handle(self, *args, **options):
        summary = demo_create()
        preview = launch_preview(campaign=summary.campaign, sample=False)
        self.stdout.write(self.style.SUCCESS("Demo data ready."))
        self.stdout.write(
            f"- device {summary.device.label!r}\n"
            f"- {summary.contacts} contacts in 3 overlapping categories "
            f"({summary.opted_out} opted out, {summary.invalid} known invalid)\n"
            f"- campaign {summary.campaign.name!r} ({summary.campaign.status}), "
            f"{preview.recipients} recipients\n"
            f"Launch it: {settings.RELANCE_BASE_URL}/admin/campaigns/campaign/{summary.campaign.pk}/change/"
        )
        if not settings.WASSENGER_SANDBOX:
            self.stderr.write(
                self.style.WARNING("A real Wassenger token is configured: the demo would send for real.")
            )
