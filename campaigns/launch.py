"""Launching a campaign: what a launch would do (the preview), and the launch itself.

`campaign_launch` turns a draft into a sending (or scheduled) campaign. Under a lock on
the campaign row, one INSERT … SELECT creates every Message 1 (campaigns/launch_sql.py,
which also renders the text); a recipient missing a variable makes that statement fail,
and a campaign larger than today's quota is refused after it, so either way nothing is
kept. `launch_preview` computes what the confirmation pages and the command show (who is
skipped and why, variables, quota, finish time, a sample) and explains refusals, which are
typed (campaigns/refusals.py). Pause, resume, cancel and what follows a launch are
campaigns/lifecycle.py; the launch page's context is campaigns/launch_page.py.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _

from campaigns.launch_sql import (
    NOT_NULL_VIOLATION,
    Sample,
    VariableCheck,
    audience_counts,
    audience_sample,
    campaign_message_1_variants,
    message_1_insert,
    template_variables,
)
from campaigns.lifecycle import campaign_locked, sender_start
from campaigns.models import Campaign, CampaignStatus
from campaigns.refusals import (
    DeviceCannotSend,
    LaunchRefused,
    QuotaExceeded,
    audience_refusal,
    status_refusal,
    template_refusal,
    variables_refusal,
    variants_refusal,
)
from campaigns.rendering import BUILTIN_VARIABLES, variant_counts
from config import clock
from messaging import pacing
from messaging.claims import device_policy, device_snapshot, device_state
from messaging.models import Message, MessageKind, MessageStatus

logger = logging.getLogger(__name__)


# --- Quota and finish time ------------------------------------------------------------------


@dataclass(frozen=True)
class Pace:
    """The device's room for Message 1 on the start day, and when the campaign would end."""

    start: datetime
    daily_allowance: int  # Message 1 a day on this device, the Message 2 reserve set aside
    remaining_today: int  # Message 1 the start day still allows, after queued_ahead
    queued_ahead: int  # pending Message 1 of other campaigns on the same device
    estimated_finish: datetime | None  # None when the device may send no Message 1 at all
    days_needed: int | None  # UTC days from the start to the estimated finish, both counted
    device_halted: bool

    @property
    def scheduled(self) -> bool:
        return self.start > clock.now()

    def refusal(self, *, campaign: Campaign, recipients: int, allow_multi_day: bool) -> LaunchRefused | None:
        if self.daily_allowance == 0:
            return DeviceCannotSend(
                _("Device “%(device)s” may send no Message 1 at all: raise its daily limit.")
                % {"device": campaign.device}
            )
        if allow_multi_day or recipients <= self.remaining_today:
            return None
        facts = {"remaining_today": self.remaining_today, "days_needed": self.days_needed}
        facts.update(recipients=recipients, estimated_finish=self.estimated_finish)
        return QuotaExceeded(_quota_message(self, recipients), **facts)


def _quota_message(pace: Pace, recipients: int) -> str:
    return _(
        "The campaign has %(recipients)d recipients but only %(remaining)d Message 1 can still be "
        "sent on %(day)s (%(allowance)d a day on this device, the follow-up reserve set aside; "
        "%(queued)d already queued by other campaigns). It needs %(days)d days and would finish "
        "around %(finish)s. Accept sending over several days to launch it anyway."
    ) % {
        "recipients": recipients,
        "remaining": pace.remaining_today,
        "day": pace.start.date().isoformat(),
        "allowance": pace.daily_allowance,
        "queued": pace.queued_ahead,
        "days": pace.days_needed,
        "finish": format_time(pace.estimated_finish),
    }


def _pace(campaign: Campaign, *, recipients: int, now: datetime) -> Pace:
    """Pending Message 1s of the device's other live campaigns go first (lower ids), so they
    count against the room and the estimate alike."""
    start = _start(campaign, now)
    device = device_snapshot(campaign.device_id, now)
    policy, state = device_policy(device), device_state(device, now)
    allowance, queued = policy.allowance(pacing.Kind.MESSAGE_1), _queued_ahead(campaign)
    room = pacing.pacing_remaining_today(policy=policy, state=state, now=start, kind=pacing.Kind.MESSAGE_1)
    finish, days = None, None
    if allowance > 0:
        estimate = {"policy": policy, "state": state, "now": start, "message_1": queued + recipients}
        finish = pacing.pacing_estimate_finish(**estimate)
        days = (finish.date() - start.date()).days + 1
    return Pace(start, allowance, max(room - queued, 0), queued, finish, days, device.halted_at is not None)


def _start(campaign: Campaign, now: datetime) -> datetime:
    """When sending begins: the campaign's start time, or now if it is empty or past."""
    return max(campaign.starts_at or now, now)


def _queued_ahead(campaign: Campaign) -> int:
    live = (CampaignStatus.SENDING, CampaignStatus.SCHEDULED)
    pending = Message.objects.filter(kind=MessageKind.MESSAGE_1, status=MessageStatus.PENDING)
    on_device = pending.filter(device_id=campaign.device_id, campaign__status__in=live)
    return on_device.exclude(campaign_id=campaign.pk).count()


def format_time(moment: datetime) -> str:
    # Quotas belong to UTC days, so times are shown in UTC too.
    return moment.strftime("%Y-%m-%d %H:%M UTC")


# --- Preview ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VariantPreview:
    number: int  # as stored on the message: 1, 2, …
    text: str  # as written, variables included
    recipients: int  # how many get it
    sample: str  # as the preview's contact would read it, "" without a sample


def variants_preview(campaign: Campaign, *, recipients: int, sample: Sample | None) -> tuple:
    """Every variant of Message 1 and how many recipients get it; () with a single text."""
    if variants_refusal(campaign):
        return ()
    texts = campaign_message_1_variants(campaign)
    if len(texts) < 2:
        return ()
    counts = variant_counts(len(texts), recipients)
    rendered = sample.message_1_variants if sample else ("",) * len(texts)
    return tuple(
        VariantPreview(number, text, count, shown)
        for number, (text, count, shown) in enumerate(zip(texts, counts, rendered, strict=True), start=1)
    )


@dataclass(frozen=True)
class LaunchPreview:
    """Everything the operator is told before a launch; `refusals` lists what blocks it."""

    campaign: Campaign
    recipients: int
    memberships: int  # (contact, category) pairs over the campaign's categories
    distinct_contacts: int
    opted_out: int
    invalid: int
    recently_messaged: int  # skipped: a Message 1 from any campaign in the last `fatigue_days`
    in_other_campaigns: int  # skipped: in another campaign in progress (`skip_other_campaigns`)
    variables: tuple[VariableCheck, ...]
    template_variables: tuple[str, ...]  # {{ }} variables in Message 1's template: unsupported
    pace: Pace
    sample: Sample | None = None
    variants: tuple[VariantPreview, ...] = ()  # Message 1's variants, when there are several

    @property
    def duplicates(self) -> int:
        return self.memberships - self.distinct_contacts

    @property
    def missing_without_fallback(self) -> dict[str, int]:
        return {v.name: v.missing for v in self.variables if v.missing and v.fallback is None}

    @property
    def unknown_variables(self) -> list[str]:
        """Variables no recipient has, not built in and with no fallback: a typo, most likely.

        With a fallback the operator chose what everyone gets, so that is not an error."""
        unknown = (v for v in self.variables if v.name not in BUILTIN_VARIABLES and v.fallback is None)
        return [v.name for v in unknown if self.recipients and v.missing == self.recipients]

    def refusals(self, *, allow_multi_day: bool = False) -> list[LaunchRefused]:
        """Every reason the launch would be refused, the most fundamental first."""
        found = [
            status_refusal(self.campaign),
            variants_refusal(self.campaign),
            audience_refusal(self),
            variables_refusal(self),
            template_refusal(self.template_variables),
            self.pace.refusal(
                campaign=self.campaign, recipients=self.recipients, allow_multi_day=allow_multi_day
            ),
        ]
        return [refusal for refusal in found if refusal is not None]

    def check(self, *, allow_multi_day: bool = False) -> None:
        refusals = self.refusals(allow_multi_day=allow_multi_day)
        if refusals:
            raise refusals[0]


def launch_preview(*, campaign: Campaign, now: datetime | None = None, sample: bool = True) -> LaunchPreview:
    """What launching `campaign` now would do: audience, variables, quota and finish time."""
    now = now or clock.now()
    counts = audience_counts(campaign, now=now)
    found = audience_sample(campaign, now=now) if sample and not variants_refusal(campaign) else None
    return LaunchPreview(
        campaign=campaign,
        **counts,
        template_variables=tuple(template_variables(campaign)),
        pace=_pace(campaign, recipients=counts["recipients"], now=now),
        sample=found,
        variants=variants_preview(campaign, recipients=counts["recipients"], sample=found),
    )


# --- Launch ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LaunchResult:
    campaign: Campaign
    messages_created: int
    pace: Pace


def launched_message(result: LaunchResult) -> str:
    """What the operator is told once a launch went through (admin and operator pages)."""
    facts = {
        "name": result.campaign.name,
        "count": result.messages_created,
        "start": format_time(result.pace.start),
        "finish": format_time(result.pace.estimated_finish),
    }
    if result.campaign.status == CampaignStatus.SCHEDULED:
        return (
            _(
                "Campaign “%(name)s” scheduled for %(start)s: %(count)d Message 1 queued, "
                "estimated finish %(finish)s."
            )
            % facts
        )
    return _("Campaign “%(name)s” launched: %(count)d Message 1 queued, estimated finish %(finish)s.") % facts


@transaction.atomic
def campaign_launch(*, campaign: Campaign, by=None, allow_multi_day: bool = False) -> LaunchResult:
    """Launch a draft: one Message 1 per eligible contact, then sending or scheduled.

    Raises a `LaunchRefused`, changing nothing, when it cannot. The campaign row stays
    locked until commit, so a second launch waits, then finds it launched. The audience is
    read once, by the insert itself: the counts of `launch_preview` are only computed to
    explain a refusal, and a quota refusal takes the inserted rows back.
    """
    campaign = campaign_locked(campaign.pk)
    now = clock.now()
    _raise(
        status_refusal(campaign)
        or variants_refusal(campaign)
        or template_refusal(template_variables(campaign))
    )
    created = _message_1_insert_checked(campaign, now=now)
    pace = _pace(campaign, recipients=created, now=now)
    # Raised inside the atomic block, a refusal takes the new rows back with it.
    _raise(pace.refusal(campaign=campaign, recipients=created, allow_multi_day=allow_multi_day))
    _mark_launched(campaign, by=by, scheduled=pace.start > now)
    logger.info("campaign %s launched by %s: %d Message 1, %s", campaign.pk, by, created, campaign.status)
    return LaunchResult(campaign, created, pace)


def _raise(refusal: LaunchRefused | None) -> None:
    if refusal is not None:
        raise refusal


def _message_1_insert_checked(campaign: Campaign, *, now: datetime) -> int:
    """The insert; a recipient missing a variable, or no recipient at all, is a refusal."""
    start = _start(campaign, now)
    try:
        with transaction.atomic():
            created = message_1_insert(campaign=campaign, start=start, now=now)
    except IntegrityError as error:
        if getattr(error.__cause__, "sqlstate", None) != NOT_NULL_VIOLATION:
            raise
        raise _explained(campaign, now) from error
    if not created:
        raise _explained(campaign, now)
    return created


def _explained(campaign: Campaign, now: datetime) -> LaunchRefused:
    """Why the insert refused (a NULL content) or found nobody, from a fresh preview."""
    preview = launch_preview(campaign=campaign, now=now, sample=False)
    found = audience_refusal(preview) or variables_refusal(preview)
    return found or LaunchRefused(_("The contacts changed during the launch: please try again."))


def _mark_launched(campaign: Campaign, *, by, scheduled: bool) -> None:
    campaign.status_save(CampaignStatus.SCHEDULED if scheduled else CampaignStatus.SENDING, by=by)
    if not scheduled:
        sender_start(campaign.device_id)
