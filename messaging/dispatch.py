"""The one-minute dispatcher: recovers what died and starts what is due [legacy 8.5].

Senders are not started here: the sender loops (messaging/loop.py) find due devices
themselves. The dispatcher frees expired leases, settles sends cut short by a dead loop,
reconciles unknown outcomes (in a bounded slice, within its budget) and moves campaigns.

Every step is idempotent and cheap when there is nothing to do, so running it twice, late,
or on two clusters at once changes nothing. Starting a scheduled campaign and completing a
finished one are campaign lifecycle steps (campaigns/lifecycle.py), cancelling is
messaging/messages.py: the dispatcher only calls them.
"""

import logging
import time
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q

from campaigns import lifecycle
from campaigns.models import CampaignStatus
from config import clock
from messaging.messages import messages_cancel_pending, messages_stopped_by_opt_out
from messaging.models import (
    CANCELLED_OPTED_OUT,
    CANCELLED_WITH_CAMPAIGN,
    AttemptOutcome,
    Device,
    Message,
    MessageAttempt,
    MessageStatus,
)
from messaging.sending import leases_release_expired, message_reconcile

logger = logging.getLogger(__name__)


WAKE_CHANNEL = "relance_senders"


def sender_enqueue(device_id: int) -> None:
    """Tell the sender loops the device has new work, once the current transaction commits.

    The loops find due devices by themselves (every SENDER_LOOP_POLL_SECONDS); this wakes
    them at once through PostgreSQL's NOTIFY, which costs nothing when nobody listens.
    """
    transaction.on_commit(lambda: senders_wake(device_id))


def senders_wake(device_id: int) -> None:
    """Wake the sender loops now (NOTIFY on WAKE_CHANNEL, the device id as payload)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_notify(%s, %s)", [WAKE_CHANNEL, str(device_id)])


def dispatch_run() -> dict:
    """One tick, within its budget whatever Wassenger does. Returns what it did, for the
    logs and the tests. Each step is on its own: one that fails is logged and the others
    run; the next tick tries it again."""
    deadline = time.monotonic() + settings.DISPATCH_BUDGET_SECONDS
    steps = {
        "leases_released": leases_release_expired,
        "orphans": messages_orphaned_to_unknown,
        "reconciled": lambda: messages_reconcile_due(deadline=deadline),
        "no_longer_wanted": messages_no_longer_wanted_cancelled,
        "campaigns_started": lifecycle.campaigns_start_due,
        "campaigns_completed": lifecycle.campaigns_complete_finished,
    }
    report = {name: _step(name, run) for name, run in steps.items()}
    if any(report.values()):
        logger.info("dispatch %s", report)
    return report


def _step(name: str, run) -> int:
    try:
        return run()
    except Exception:
        logger.exception("dispatch: %s failed; the next tick tries again", name)
        return 0


ORPHANED_ATTEMPT = "the sender stopped mid-send (its worker died)"

# How far back the tidy-up below looks for opt-outs and cancellations: a message in flight at
# that moment is back to `pending` within minutes (a retry, a reconciled send), and the claim
# never sends one anyway. Looking back a week rather than for ever keeps a tick's cost that
# of a week of opt-outs, not of every opt-out since the install.
NO_LONGER_WANTED_LOOKBACK = timedelta(days=7)


def messages_no_longer_wanted_cancelled() -> int:
    """Pending messages of contacts who opted out, or of cancelled campaigns: cancelled.

    Opting out and cancelling cancel what is pending at that moment; this catches a
    message that was in flight then and came back to `pending` afterwards (a retry, or a
    send Wassenger never received). The sender never claims them meanwhile (it only sends
    for sending campaigns and contacts who did not opt out).
    """
    now = clock.now()
    since = now - NO_LONGER_WANTED_LOOKBACK
    of_opted_out = messages_stopped_by_opt_out(Message.objects.filter(contact__opted_out_at__gte=since))
    of_cancelled = Message.objects.filter(
        campaign__status=CampaignStatus.CANCELLED, campaign__finished_at__gte=since
    )
    opted_out = messages_cancel_pending(messages=of_opted_out, reason=CANCELLED_OPTED_OUT, now=now)
    cancelled = messages_cancel_pending(messages=of_cancelled, reason=CANCELLED_WITH_CAMPAIGN, now=now)
    return opted_out + cancelled


@transaction.atomic
def messages_orphaned_to_unknown() -> int:
    """`sending` rows whose sender died: their outcome is unknown until Wassenger tells.

    A sender died if its device has no live lease, or if its claim is older than a lease:
    a send lasts at most the client's timeouts (35 s by default), and a successor may hold
    the device's lease by now and keep it for as long as it has work. Their attempt, which
    the dead sender never closed, is closed as unknown too: an attempt of an `unknown`
    message can only still be in flight if its sender died.
    """
    now = clock.now()
    live_lease = Device.objects.filter(pk=OuterRef("device_id"), lease_expires_at__gte=now).exclude(
        lease_owner=""
    )
    claimed_before = now - timedelta(seconds=settings.SENDER_LEASE_SECONDS)
    orphaned = (
        Message.objects.filter(status=MessageStatus.SENDING)
        .filter(~Exists(live_lease) | Q(updated_at__lt=claimed_before))
        .update(status=MessageStatus.UNKNOWN, next_attempt_at=now, updated_at=now)
    )
    if orphaned:
        MessageAttempt.objects.filter(
            outcome=AttemptOutcome.IN_FLIGHT, message__status=MessageStatus.UNKNOWN
        ).update(outcome=AttemptOutcome.UNKNOWN, finished_at=now, error=ORPHANED_ATTEMPT)
    return orphaned


def messages_reconcile_due(*, deadline: float | None = None) -> int:
    """Look up unknown outcomes that are due, a bounded slice a tick, each lookup with a short
    timeout, until the tick's `deadline` (time.monotonic()); the rest waits for the next
    tick. A row that fails is logged and skipped: it never stops the others."""
    now = clock.now()
    due = Message.objects.filter(status=MessageStatus.UNKNOWN, next_attempt_at__lte=now).select_related(
        "device", "campaign", "contact"
    )
    settled = 0
    for message in due.order_by("next_attempt_at", "pk")[: settings.RECONCILE_SLICE]:
        if deadline is not None and time.monotonic() >= deadline:
            break
        settled += _reconcile_one(message)
    return settled


def _reconcile_one(message: Message) -> int:
    try:
        return int(message_reconcile(message, timeout=settings.RECONCILE_LOOKUP_TIMEOUT) is not None)
    except Exception:
        logger.exception("reconciling message %s failed; skipped until the next tick", message.pk)
        # Later rows first next time: one bad row never holds the queue.
        Message.objects.filter(pk=message.pk).update(next_attempt_at=clock.now() + timedelta(seconds=60))
        return 0
