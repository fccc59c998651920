"""`manage.py launch_campaign ID [--allow-multi-day] [--dry-run]`: the admin's launch, scripted.

Exit codes: 0 launched (or, with --dry-run, launchable); 1 no such campaign; 2 bad
arguments; 3 refused (already launched, no recipients, variables…); 4 refused because
today's quota is too small: run again with --allow-multi-day to spread it over days.
"""

from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _

from campaigns.launch import LaunchPreview, campaign_launch, format_time, launch_preview
from campaigns.models import Campaign
from campaigns.refusals import CampaignRefused, QuotaExceeded

EXIT_NOT_FOUND = 1
EXIT_REFUSED = 3
EXIT_QUOTA = 4


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser):
        parser.add_argument("campaign_id", type=int)
        parser.add_argument(
            "--allow-multi-day",
            action="store_true",
            help=_("Launch even if today's quota is too small: sending spreads over several days."),
        )
        parser.add_argument(
            "--dry-run", action="store_true", help=_("Show what would happen; change nothing.")
        )

    def handle(self, *args, campaign_id: int, allow_multi_day: bool, dry_run: bool, **options):
        campaign = Campaign.objects.filter(pk=campaign_id).first()
        if campaign is None:
            raise CommandError(
                _("No campaign with id %(id)d.") % {"id": campaign_id}, returncode=EXIT_NOT_FOUND
            )
        preview = launch_preview(campaign=campaign)
        self.stdout.write("\n".join(preview_lines(preview)))
        try:
            if dry_run:
                preview.check(allow_multi_day=allow_multi_day)
                return
            result = campaign_launch(campaign=campaign, allow_multi_day=allow_multi_day)
        except CampaignRefused as refusal:
            raise CommandError(refusal.message, returncode=_exit_code(refusal)) from refusal
        self.stdout.write(
            self.style.SUCCESS(
                _("Campaign %(id)d is %(status)s: %(count)d Message 1 queued.")
                % {"id": campaign.pk, "status": result.campaign.status, "count": result.messages_created}
            )
        )


def _exit_code(refusal: CampaignRefused) -> int:
    return EXIT_QUOTA if isinstance(refusal, QuotaExceeded) else EXIT_REFUSED


def _fatigue_facts(preview: LaunchPreview) -> dict:
    days = preview.campaign.fatigue_days
    return {"recent": preview.recently_messaged, "days": days, "busy": preview.in_other_campaigns}


def preview_lines(preview: LaunchPreview) -> list[str]:
    """The launch preview as plain text."""
    pace = preview.pace
    lines = [
        _("Recipients: %(n)d") % {"n": preview.recipients},
        _("Skipped: %(dup)d in several categories (counted once), %(out)d opted out, %(bad)d not on WhatsApp")
        % {"dup": preview.duplicates, "out": preview.opted_out, "bad": preview.invalid},
        _("Skipped: %(recent)d received a Message 1 in the last %(days)d days, %(busy)d in another campaign")
        % _fatigue_facts(preview),
        _("Starts: %(start)s") % {"start": format_time(pace.start)},
        _("Message 1 still allowed on the start day: %(n)d (%(queued)d queued by other campaigns)")
        % {"n": pace.remaining_today, "queued": pace.queued_ahead},
    ]
    if pace.estimated_finish is not None:
        lines.append(
            _("Estimated finish: %(finish)s (%(days)d UTC days)")
            % {"finish": format_time(pace.estimated_finish), "days": pace.days_needed}
        )
    lines += [
        _("Variable %(name)s: missing for %(n)d") % {"name": v.name, "n": v.missing}
        for v in preview.variables
    ]
    if preview.sample:
        sample = preview.sample
        lines.append(_("Message 1 for %(who)s: %(text)s") % {"who": sample.contact, "text": sample.message_1})
    lines += [
        _("Variant %(number)d, to %(n)d recipients: %(text)s")
        % {"number": v.number, "n": v.recipients, "text": v.text}
        for v in preview.variants
    ]
    return lines
