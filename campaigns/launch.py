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
from django.db.models import Count
from django.utils.translation import gettext as _

from campaigns.launch_sql import (
    NOT_NULL_VIOLATION,
    Sample,
    VariableCheck,
    audience_counts,
    audience_sample,
    campaign_message_1_variants,
    eligible_count,
    message_1_insert,
    messages_per_device,
    template_variables,
)
from campaigns.lifecycle import campaign_locked, senders_start
from campaigns.models import Campaign, CampaignStatus
from campaigns.refusals import (
    DeviceCannotSend,
    LaunchRefused,
    NotACampaignDevice,
    QuotaExceeded,
    audience_refusal,
    devices_refusal,
    status_refusal,
    template_refusal,
    variables_refusal,
    variants_refusal,
)
from campaigns.rendering import BUILTIN_VARIABLES, variant_counts
from config import clock
from messaging import pacing
from messaging.claims import device_policy, device_state, devices_with_sending_facts
from messaging.devices import device_handover
from messaging.models import Device, Message, MessageKind, MessageStatus
from messaging.shares import Lane, shares_balanced

logger = logging.getLogger(__name__)


# --- Quota and finish time ------------------------------------------------------------------


@dataclass(frozen=True)
class DevicePace:
    """One of the campaign's devices at launch: its room, its share and when it would end."""

    device: Device
    daily_allowance: int  # Message 1 a day on this device, the Message 2 reserve set aside
    remaining_today: int  # Message 1 the start day still allows, after queued_ahead
    queued_ahead: int  # pending Message 1 of other campaigns on the same device
    recipients: int  # this campaign's Message 1s given to it
    estimated_finish: datetime | None  # None when it takes nothing
    halted: bool
    shared: bool  # takes part in the split (a halted device does not while another can send)
    daily_limit: int = 0  # the start day's limit: lower than the device's own while warming up
    warming_up: bool = False
    days: tuple = ()  # pacing.DayPlan of each UTC day it sends on, queue ahead included


@dataclass(frozen=True)
class Pace:
    """The campaign's devices on the start day, the split of its recipients between them, and
    when the whole campaign would end (its last device's finish)."""

    start: datetime
    devices: tuple[DevicePace, ...]

    @property
    def shared(self) -> tuple[DevicePace, ...]:
        return tuple(device for device in self.devices if device.shared)

    @property
    def daily_allowance(self) -> int:
        return sum(device.daily_allowance for device in self.shared)

    @property
    def remaining_today(self) -> int:
        return sum(device.remaining_today for device in self.shared)

    @property
    def queued_ahead(self) -> int:
        return sum(device.queued_ahead for device in self.shared)

    @property
    def estimated_finish(self) -> datetime | None:
        """None when no device may send a Message 1 at all."""
        finishes = [device.estimated_finish for device in self.devices if device.estimated_finish]
        return max(finishes) if finishes else None

    @property
    def days_needed(self) -> int | None:
        """UTC days from the start to the estimated finish, both counted."""
        finish = self.estimated_finish
        return None if finish is None else (finish.date() - self.start.date()).days + 1

    @property
    def warming_up(self) -> tuple[DevicePace, ...]:
        """The shared devices whose young number lowers the start day's limit (warm-up)."""
        return tuple(device for device in self.shared if device.warming_up)

    @property
    def day_plan(self) -> list[tuple]:
        """(UTC day, sends, warm-up lowers that day's limit) of every device together."""
        days: dict = {}
        for device in self.devices:
            for day in device.days:
                sends, warming = days.get(day.day, (0, False))
                days[day.day] = (sends + day.sends, warming or day.warming_up)
        return [(day, sends, warming) for day, (sends, warming) in sorted(days.items())]

    @property
    def halted_devices(self) -> list[Device]:
        return [device.device for device in self.devices if device.halted]

    @property
    def device_halted(self) -> bool:
        """Nothing is sent until a device is resumed: every device it was given to is halted."""
        given = [device for device in self.devices if device.recipients] or list(self.devices)
        return bool(given) and all(device.halted for device in given)

    @property
    def scheduled(self) -> bool:
        return self.start > clock.now()

    def device_shares(self) -> dict[int, int]:
        """{device id: Message 1s given to it}, for the insert."""
        return {device.device.pk: device.recipients for device in self.devices}

    def refusal(self, *, campaign: Campaign, recipients: int, allow_multi_day: bool) -> LaunchRefused | None:
        if not self.devices:
            return devices_refusal(campaign)
        if self.daily_allowance == 0:
            return DeviceCannotSend(
                _("Device “%(device)s” may send no Message 1 at all: raise its daily limit.")
                % {"device": ", ".join(str(device.device) for device in self.shared)}
            )
        if allow_multi_day or recipients <= self.remaining_today:
            return None
        facts = {"remaining_today": self.remaining_today, "days_needed": self.days_needed}
        facts.update(recipients=recipients, estimated_finish=self.estimated_finish)
        return QuotaExceeded(_quota_message(self, recipients), **facts)


def warm_up_note(device: DevicePace) -> str:
    """Why a device's limit is lower today, for the operator (escaped for the % formatting)."""
    note = _(
        "“%(device)s” is a young number (in use since %(since)s): its warm-up allows %(limit)d sends "
        "today, of its own %(own)d."
    ) % {
        "device": device.device,
        "since": device.device.number_since.isoformat(),
        "limit": device.daily_limit,
        "own": device.device.daily_limit,
    }
    return note.replace("%", "%%")


def _quota_message(pace: Pace, recipients: int) -> str:
    text = _(
        "The campaign has %(recipients)d recipients but only %(remaining)d Message 1 can still be "
        "sent on %(day)s (%(allowance)d a day on this device, the follow-up reserve set aside; "
        "%(queued)d already queued by other campaigns). It needs %(days)d days and would finish "
        "around %(finish)s. Accept sending over several days to launch it anyway."
    )
    if len(pace.shared) > 1:
        text = _(
            "The campaign has %(recipients)d recipients but only %(remaining)d Message 1 can still be "
            "sent on %(day)s (%(allowance)d a day on its %(devices)d devices together, the follow-up "
            "reserve set aside; %(queued)d already queued by other campaigns). It needs %(days)d days "
            "and would finish around %(finish)s. Accept sending over several days to launch it anyway."
        )
    return (text + "".join(f" {warm_up_note(device)}" for device in pace.warming_up)) % {
        "recipients": recipients,
        "remaining": pace.remaining_today,
        "day": pace.start.date().isoformat(),
        "allowance": pace.daily_allowance,
        "devices": len(pace.shared),
        "queued": pace.queued_ahead,
        "days": pace.days_needed,
        "finish": format_time(pace.estimated_finish),
    }


def _pace(campaign: Campaign, *, recipients: int, now: datetime, shares: dict | None = None) -> Pace:
    """Each device's room and share; pending Message 1s of a device's other live campaigns go
    first (lower ids), so they count against its room and its estimate alike. `shares`, when
    given, is the split already made (device id → count); else the balanced one."""
    start = _start(campaign, now)
    devices = devices_with_sending_facts(campaign.device_ids(), now)
    queued = _queued_ahead(campaign, [device.pk for device in devices])
    lanes = [Lane(device_policy(d), device_state(d, now), queued.get(d.pk, 0)) for d in devices]
    # A halted device is given nothing while another can send: its messages would wait.
    sending = [device.halted_at is None for device in devices]
    shared = sending if any(sending) else [True] * len(devices)
    if shares is None:
        usable = [lane for lane, taking in zip(lanes, shared, strict=True) if taking]
        split = iter(shares_balanced(lanes=usable, count=recipients, now=start))
        counts = [next(split) if taking else 0 for taking in shared]
    else:
        counts = [shares.get(device.pk, 0) for device in devices]
    return Pace(
        start, tuple(_device_pace(*row, start) for row in zip(devices, lanes, counts, shared, strict=True))
    )


def _device_pace(device: Device, lane: Lane, recipients: int, shared: bool, start: datetime) -> DevicePace:
    day = start.date()
    # The start day's allowance: a young number's is its warm-up step's.
    allowance = lane.policy.allowance(pacing.Kind.MESSAGE_1, day)
    room = pacing.pacing_remaining_today(
        policy=lane.policy, state=lane.state, now=start, kind=pacing.Kind.MESSAGE_1
    )
    able = recipients and lane.policy.allowance(pacing.Kind.MESSAGE_1)
    plan = lane.plan(now=start, extra=recipients) if able else None
    finish = plan.finish if plan else None
    queued, halted = lane.message_1_ahead, device.halted_at is not None
    return DevicePace(
        device,
        allowance,
        max(room - queued, 0),
        queued,
        recipients,
        finish,
        halted,
        shared,
        daily_limit=lane.policy.limit_on(day),
        warming_up=lane.policy.warming_up(day),
        days=plan.days if plan else (),
    )


def _start(campaign: Campaign, now: datetime) -> datetime:
    """When sending begins: the campaign's start time, or now if it is empty or past."""
    return max(campaign.starts_at or now, now)


def _queued_ahead(campaign: Campaign, device_ids: list[int]) -> dict[int, int]:
    """Pending Message 1s of the other live campaigns, per device."""
    live = (CampaignStatus.SENDING, CampaignStatus.SCHEDULED)
    pending = Message.objects.filter(kind=MessageKind.MESSAGE_1, status=MessageStatus.PENDING)
    on_devices = pending.filter(device_id__in=device_ids, campaign__status__in=live)
    rows = on_devices.exclude(campaign_id=campaign.pk).values_list("device_id").annotate(n=Count("id"))
    return dict(rows.order_by())


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
        or devices_refusal(campaign)
        or template_refusal(template_variables(campaign))
    )
    created, pace = _message_1_insert_checked(campaign, now=now)
    # Raised inside the atomic block, a refusal takes the new rows back with it.
    _raise(pace.refusal(campaign=campaign, recipients=created, allow_multi_day=allow_multi_day))
    _mark_launched(campaign, by=by, scheduled=pace.start > now)
    logger.info("campaign %s launched by %s: %d Message 1, %s", campaign.pk, by, created, campaign.status)
    return LaunchResult(campaign, created, pace)


def _raise(refusal: LaunchRefused | None) -> None:
    if refusal is not None:
        raise refusal


def _message_1_insert_checked(campaign: Campaign, *, now: datetime) -> tuple[int, Pace]:
    """The insert and the pace of what it inserted; a recipient missing a variable, or no
    recipient at all, is a refusal.

    On one device the insert itself counts the audience. Over several, the split needs the
    count first (one scan more), and the insert gives each device its share of the
    recipients in contact order; should the contacts change in between, the pace is taken
    again from the rows as inserted.
    """
    devices = campaign.device_ids()
    planned = (
        None if len(devices) == 1 else _pace(campaign, recipients=eligible_count(campaign, now=now), now=now)
    )
    shares = planned.device_shares() if planned else {devices[0]: None}
    try:
        with transaction.atomic():
            created = message_1_insert(campaign=campaign, start=_start(campaign, now), now=now, shares=shares)
    except IntegrityError as error:
        if getattr(error.__cause__, "sqlstate", None) != NOT_NULL_VIOLATION:
            raise
        raise _explained(campaign, now) from error
    if not created:
        raise _explained(campaign, now)
    if planned is None:
        return created, _pace(campaign, recipients=created, now=now, shares={devices[0]: created})
    if sum(shares.values()) != created:
        return created, _pace(campaign, recipients=created, now=now, shares=messages_per_device(campaign))
    return created, planned


def _explained(campaign: Campaign, now: datetime) -> LaunchRefused:
    """Why the insert refused (a NULL content) or found nobody, from a fresh preview."""
    preview = launch_preview(campaign=campaign, now=now, sample=False)
    found = audience_refusal(preview) or variables_refusal(preview)
    return found or LaunchRefused(_("The contacts changed during the launch: please try again."))


def _mark_launched(campaign: Campaign, *, by, scheduled: bool) -> None:
    campaign.status_save(CampaignStatus.SCHEDULED if scheduled else CampaignStatus.SENDING, by=by)
    if not scheduled:
        senders_start(campaign)


# --- After launch: moving unsent Message 1s between the campaign's devices ------------------


def campaign_hand_over(*, campaign: Campaign, from_devices=None, to_devices=None) -> dict[int, int]:
    """The operator moves the campaign's unsent Message 1s off `from_devices` (by default its
    halted devices) to `to_devices` (by default its other devices that can send), balanced as
    at launch; returns {device id: Message 1s it received}. What a device halted for good does
    by itself (messaging/devices.py `device_handover`, which this calls).
    """
    own = campaign.device_ids()
    sources = list(from_devices) if from_devices is not None else _halted(own)
    stranger = [d for d in [*sources, *(to_devices or [])] if d not in own]
    if stranger:
        raise NotACampaignDevice(
            _("Device %(devices)s is not one of the devices of campaign “%(name)s”.")
            % {"devices": ", ".join(map(str, stranger)), "name": campaign.name},
            devices=stranger,
        )
    moved: dict[int, int] = {}
    for source in sources:
        targets = None if to_devices is None else [d for d in to_devices if d != source]
        for target, count in device_handover(
            device_id=source, campaign_id=campaign.pk, to_device_ids=targets
        ).items():
            moved[target] = moved.get(target, 0) + count
    logger.info("campaign %s: unsent Message 1s moved from %s: %s", campaign.pk, sources, moved)
    return moved


def _halted(device_ids: list[int]) -> list[int]:
    halted = Device.objects.filter(pk__in=device_ids, halted_at__isnull=False)
    return list(halted.order_by("pk").values_list("pk", flat=True))
