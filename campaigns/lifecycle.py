"""A campaign's life after launch: pause, resume, cancel, start when due, complete when done.

The operator's moves (admin, operator pages, API) and the dispatcher's (messaging/dispatch.py,
every minute) all lock the campaign row, check that the move is allowed from where it is now,
and save it through `Campaign.status_save`, the one writer of a status and its timestamps.
The launch itself (draft → sending or scheduled) is campaigns/launch.py.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from campaigns.models import Campaign, CampaignStatus, FailedRetry
from campaigns.refusals import StatusRefused
from config import clock
from messaging.messages import messages_cancel_pending, messages_requeue_failed, messages_retriable
from messaging.models import CANCELLED_WITH_CAMPAIGN, OPEN_STATUSES, Message, MessageKind

logger = logging.getLogger(__name__)


def campaign_locked(campaign_id: int) -> Campaign:
    """The campaign, its row locked until the transaction ends."""
    return Campaign.objects.select_for_update().get(pk=campaign_id)


def senders_start(campaign: Campaign) -> None:
    """Wake the sender of each of the campaign's devices once the transaction commits."""
    # Imported here: the dispatcher imports this module to start and complete campaigns.
    from messaging.dispatch import sender_enqueue

    for device_id in campaign.device_ids():
        sender_enqueue(device_id)


# --- The operator's moves ---------------------------------------------------------------------


@transaction.atomic
def campaign_pause(*, campaign: Campaign, by=None) -> Campaign:
    """Stop claiming the campaign's messages; a send already in flight completes."""
    return _campaign_move(campaign, CampaignStatus.PAUSED, allowed_from={CampaignStatus.SENDING}, by=by)


@transaction.atomic
def campaign_resume(*, campaign: Campaign, by=None) -> Campaign:
    """Carry on where the pause left off: the same pending messages, none twice."""
    campaign = _campaign_move(campaign, CampaignStatus.SENDING, allowed_from={CampaignStatus.PAUSED}, by=by)
    senders_start(campaign)
    return campaign


@transaction.atomic
def campaign_cancel(*, campaign: Campaign, by=None) -> int:
    """Cancel the campaign and its pending messages of both kinds; returns how many.

    Sent messages keep their state; `sending` and `unknown` ones are left to finish or be
    reconciled, since only Wassenger knows whether they went out.
    """
    live = set(CampaignStatus) - {CampaignStatus.COMPLETED, CampaignStatus.CANCELLED}
    campaign = _campaign_move(campaign, CampaignStatus.CANCELLED, allowed_from=live, by=by)
    messages = Message.objects.filter(campaign=campaign)
    return messages_cancel_pending(messages=messages, reason=CANCELLED_WITH_CAMPAIGN)


def _campaign_move(campaign: Campaign, status: str, *, allowed_from: set, by) -> Campaign:
    campaign = campaign_locked(campaign.pk)
    if campaign.status not in allowed_from or not campaign.can_transition_to(status):
        raise StatusRefused(
            _("Campaign “%(name)s” is %(current)s: it cannot be %(wanted)s.")
            % {"name": campaign.name, "current": campaign.get_status_display(), "wanted": _VERBS[status]}
        )
    campaign.status_save(status, by=by)
    logger.info("campaign %s %s by %s", campaign.pk, status, by)
    return campaign


RETRIABLE_FROM = {CampaignStatus.SENDING, CampaignStatus.PAUSED, CampaignStatus.COMPLETED}


@transaction.atomic
def campaign_retry_failed(*, campaign: Campaign, by=None) -> int:
    """ "Send the failed ones again": the campaign's failed Message 1s that Wassenger never
    accepted, whose contact is on WhatsApp and not opted out, go back to pending with fresh
    attempts; a completed campaign sends again. Audited; returns how many.

    A contact still never gets Message 1 twice from one campaign: an accepted message is
    never retried, and the message row (one per contact and campaign) is the one sent again.
    """
    campaign = campaign_locked(campaign.pk)
    if campaign.status not in RETRIABLE_FROM:
        raise StatusRefused(
            _("Campaign “%(name)s” is %(current)s: its failed messages cannot be sent again.")
            % {"name": campaign.name, "current": campaign.get_status_display()}
        )
    failed = Message.objects.filter(campaign=campaign, kind=MessageKind.MESSAGE_1)
    retried = messages_requeue_failed(messages=failed)
    FailedRetry.objects.create(
        campaign=campaign,
        requested_by=by if getattr(by, "pk", None) else None,
        requested_at=clock.now(),
        messages_retried=retried,
    )
    if retried and campaign.status == CampaignStatus.COMPLETED:
        campaign.status_save(CampaignStatus.SENDING, by=by)
    if retried:
        senders_start(campaign)
    logger.info("campaign %s: %s failed messages sent again by %s", campaign.pk, retried, by)
    return retried


def failed_retriable_count(campaign: Campaign) -> int:
    """How many a "send the failed ones again" would send again now."""
    return messages_retriable(Message.objects.filter(campaign=campaign, kind=MessageKind.MESSAGE_1)).count()


_VERBS = {
    CampaignStatus.PAUSED: gettext_lazy("paused"),
    CampaignStatus.SENDING: gettext_lazy("resumed"),
    CampaignStatus.CANCELLED: gettext_lazy("cancelled"),
}


# --- The dispatcher's moves -----------------------------------------------------------------------


def campaigns_start_due() -> int:
    """Scheduled campaigns whose start time has come begin sending."""
    due = Campaign.objects.filter(status=CampaignStatus.SCHEDULED, starts_at__lte=clock.now())
    return sum(_moved_if_still(pk, CampaignStatus.SCHEDULED, CampaignStatus.SENDING) for pk in _ids(due))


def campaigns_complete_finished() -> int:
    """Sending campaigns with nothing left to send and every reply window closed (for
    CAMPAIGN_COMPLETION_GRACE_SECONDS: replies only get Message 2 while it is sending).

    Each is completed under its row lock, and only if it is still sending and still done
    once locked: an operator's pause or cancel, or a reply's Message 2 created meanwhile
    (`campaign_share_lock` makes the reply wait for the lock, or the completion for the
    reply), is never overwritten nor left pending in a completed campaign.
    """
    done = Campaign.objects.filter(status=CampaignStatus.SENDING).exclude(Exists(_still_open(OuterRef("pk"))))
    return sum(_completed_if_still_done(pk) for pk in _ids(done))


def _still_open(campaign):
    window = timedelta(hours=settings.REPLY_WINDOW_HOURS, seconds=settings.CAMPAIGN_COMPLETION_GRACE_SECONDS)
    return Message.objects.filter(campaign=campaign).filter(
        Q(status__in=OPEN_STATUSES) | Q(kind=MessageKind.MESSAGE_1, sent_at__gt=clock.now() - window)
    )


@transaction.atomic
def _completed_if_still_done(campaign_id: int) -> bool:
    campaign = campaign_locked(campaign_id)
    if campaign.status != CampaignStatus.SENDING or _still_open(campaign_id).exists():
        return False
    campaign.status_save(CampaignStatus.COMPLETED)
    return True


# The table name comes from the model, never from input.
_SHARE_LOCK_SQL = f"SELECT status FROM {Campaign._meta.db_table} WHERE id = %s FOR SHARE"  # noqa: S608


def campaign_share_lock(campaign_id: int) -> str:
    """Hold the campaign's row against a status change until the transaction ends, and say
    its status as it is now (whoever changed it before is committed). Many holders at once
    do not wait for one another: replies processed together on one campaign stay parallel."""
    with connection.cursor() as cursor:
        cursor.execute(_SHARE_LOCK_SQL, [campaign_id])
        row = cursor.fetchone()
    return row[0] if row else ""


def _ids(campaigns) -> list[int]:
    return list(campaigns.values_list("pk", flat=True))


@transaction.atomic
def _moved_if_still(campaign_id: int, current: str, status: str) -> bool:
    """Move the campaign if it is still `current` once locked (an operator may have paused
    or cancelled it meanwhile); a campaign that starts sending gets its sender."""
    campaign = campaign_locked(campaign_id)
    if campaign.status != current:
        return False
    campaign.status_save(status)
    if status == CampaignStatus.SENDING:
        senders_start(campaign)
    return True
