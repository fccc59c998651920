"""`manage.py test_send CAMPAIGN_ID --contact CONTACT_ID --to PHONE`: Message 1 as that contact
would read it, queued to PHONE on the campaign's device: the sender loop sends it at the device's
next slot (paced and counted like any send); the command says when.

Exit codes: 0 queued; 1 no such campaign or contact; 3 refused (the reason is printed).
"""

from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _

from campaigns.models import Campaign, Contact
from campaigns.refusals import CampaignRefused
from campaigns.test_send import campaign_test_send, test_sent_message

EXIT_NOT_FOUND = 1
EXIT_REFUSED = 3


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser):
        parser.add_argument("campaign_id", type=int)
        parser.add_argument(
            "--contact", type=int, required=True, help=_("The contact whose Message 1 is sent.")
        )
        parser.add_argument("--to", required=True, help=_("The number to send it to (your own phone)."))

    def handle(self, *args, campaign_id: int, contact: int, to: str, **options):
        campaign = Campaign.objects.filter(pk=campaign_id).first()
        chosen = Contact.objects.filter(pk=contact).first()
        if campaign is None or chosen is None:
            raise CommandError(_("No such campaign or contact."), returncode=EXIT_NOT_FOUND)
        try:
            result = campaign_test_send(campaign=campaign, contact=chosen, phone=to)
        except CampaignRefused as refusal:
            raise CommandError(refusal.message, returncode=EXIT_REFUSED) from refusal
        self.stdout.write(self.style.SUCCESS(test_sent_message(result)))
