"""What the launch and status pages show and do, for the admin and the operator pages alike.

Both sites have a launch confirmation page and pause / resume / cancel buttons with a
confirmation; they differ only in layout. This module gives them one context for the launch
page (`launch_page_context`), one table of status moves (`STATUS_MOVES`) with what the
operator reads, and one way to run a move and word its outcome (`move_run`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from campaigns.launch import DevicePace, format_time, launch_preview, warm_up_note
from campaigns.lifecycle import (
    RETRIABLE_FROM,
    campaign_cancel,
    campaign_pause,
    campaign_resume,
    campaign_retry_failed,
    failed_retriable_count,
)
from campaigns.models import Campaign, CampaignStatus
from campaigns.refusals import QuotaExceeded
from messaging.devices import plan_warnings
from messaging.models import Device, Message, MessageStatus


def launch_page_context(*, campaign: Campaign) -> dict:
    """What the launch confirmation page shows: the preview, what blocks it, the quota."""
    preview = launch_preview(campaign=campaign)
    pace = preview.pace
    return {
        "preview": preview,
        "blocking": preview.refusals(allow_multi_day=True),
        "quota": next((r for r in preview.refusals() if isinstance(r, QuotaExceeded)), None),
        "pace": pace,
        "start": format_time(pace.start),
        "finish": format_time(pace.estimated_finish) if pace.estimated_finish else "",
        # How the recipients are shared between the numbers, and when each would be done.
        "split": [_split_row(device) for device in pace.devices],
        # Why a young number sends less today, and the sends of each UTC day when it takes several.
        "warm_up_notes": [warm_up_note(device).replace("%%", "%") for device in pace.warming_up],
        "day_plan": pace.day_plan if len(pace.day_plan) > 1 else [],
        # What each sending number's Wassenger plan cannot deliver (no replies, no receipts).
        "plan_warnings": [
            f"{device.device}: {warning}" if len(pace.devices) > 1 else warning
            for device in pace.devices
            for warning in plan_warnings(device.device.plan)
        ],
    }


def _split_row(device: DevicePace) -> dict:
    finish = device.estimated_finish
    return {"pace": device, "finish": format_time(finish) if finish else ""}


def handed_over_message(campaign: Campaign, moved: dict[int, int]) -> str:
    """What the operator is told after unsent Message 1s were moved between devices."""
    if not moved:
        return _("Campaign “%(name)s”: no unsent Message 1 to move.") % {"name": campaign.name}
    labels = dict(Device.objects.filter(pk__in=moved).values_list("pk", "label"))
    parts = ", ".join(f"{labels.get(pk, pk)}: {count}" for pk, count in sorted(moved.items()))
    return ngettext(
        "Campaign “%(name)s”: %(count)d unsent Message 1 moved (%(parts)s).",
        "Campaign “%(name)s”: %(count)d unsent Message 1s moved (%(parts)s).",
        sum(moved.values()),
    ) % {"name": campaign.name, "count": sum(moved.values()), "parts": parts}


@dataclass(frozen=True)
class StatusMove:
    """A pause, resume or cancel button: its behaviour function and what the operator reads."""

    function: Callable
    title: str
    explanation: str
    done: str  # the success message, formatted with the campaign's name


STATUS_MOVES = {
    "pause": StatusMove(
        campaign_pause,
        gettext_lazy("Pause"),
        gettext_lazy(
            "No new message of this campaign is sent until you resume it; a message being sent completes."
        ),
        gettext_lazy("Campaign “%(name)s” paused."),
    ),
    "resume": StatusMove(
        campaign_resume,
        gettext_lazy("Resume"),
        gettext_lazy("Sending carries on with the messages not sent yet; none is sent twice."),
        gettext_lazy("Campaign “%(name)s” resumed."),
    ),
    "cancel": StatusMove(
        campaign_cancel,
        gettext_lazy("Cancel"),
        gettext_lazy(
            "Messages not sent yet, and follow-ups, are cancelled for good. Sent messages keep their state."
        ),
        gettext_lazy("Campaign “%(name)s” cancelled."),
    ),
    "retry": StatusMove(
        campaign_retry_failed,
        gettext_lazy("Send the failed ones again"),
        gettext_lazy(
            "Failed Message 1s that Wassenger never accepted go back to the queue with fresh attempts, "
            "paced like the others. Contacts not on WhatsApp or opted out are left out, and no contact "
            "receives Message 1 twice."
        ),
        gettext_lazy("Campaign “%(name)s”: failed messages sent again."),
    ),
}


def move_allowed(*, campaign: Campaign, move: str) -> bool:
    return {
        "pause": campaign.status == CampaignStatus.SENDING,
        "resume": campaign.status == CampaignStatus.PAUSED,
        "cancel": not campaign.is_final,
        "retry": campaign.status in RETRIABLE_FROM and failed_retriable_count(campaign) > 0,
    }[move]


def move_pending(*, campaign: Campaign, move: str) -> int | None:
    """How many messages a cancel would cancel, or a retry send again (shown on its
    confirmation), else None."""
    if move == "retry":
        return failed_retriable_count(campaign)
    if move != "cancel":
        return None
    return Message.objects.filter(campaign=campaign, status=MessageStatus.PENDING).count()


def move_run(*, campaign: Campaign, move: str, by) -> str:
    """Do the move and return what the operator is told; raises the move's CampaignRefused."""
    outcome = STATUS_MOVES[move].function(campaign=campaign, by=by)
    done = STATUS_MOVES[move].done % {"name": campaign.name}
    if move == "cancel":
        done += " " + ngettext(
            "%(count)d pending message cancelled.", "%(count)d pending messages cancelled.", outcome
        ) % {"count": outcome}
    if move == "retry":
        done += " " + ngettext(
            "%(count)d message goes back to the queue.", "%(count)d messages go back to the queue.", outcome
        ) % {"count": outcome}
    return done
