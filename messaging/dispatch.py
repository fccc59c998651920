"""The one-minute dispatcher: restarts what died and starts what is due [legacy 8.5].

Every step is idempotent and cheap when there is nothing to do, so running it twice, late,
or on two clusters at once changes nothing. Starting a scheduled campaign and completing a
finished one are campaign lifecycle steps (campaigns/lifecycle.py), cancelling is
messaging/messages.py: the dispatcher only calls them.
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django_q.tasks import async_task

from campaigns import lifecycle
from campaigns.models import CampaignStatus
from config import clock
from messaging import pacing
from messaging.claims import devices_with_sending_facts
from messaging.messages import messages_cancel_pending
from messaging.models import (
    CANCELLED_OPTED_OUT,
    CANCELLED_WITH_CAMPAIGN,
    AttemptOutcome,
    Device,
    Message,
    MessageAttempt,
    MessageStatus,
)
from messaging.sending import leases_release_expired, message_reconcile, sender_plan

logger = logging.getLogger(__name__)

RECONCILE_BATCH = 200


def sender_enqueue(device_id: int) -> None:
    """Start a sender for the device once the current transaction commits.

    Starting one too many is harmless: the extra sender finds the lease taken and exits.
    """
    transaction.on_commit(
        lambda: async_task(
            "messaging.tasks.send_for_device",
            device_id,
            cluster=settings.SENDER_CLUSTER,
            task_name=f"send device {device_id}",
        )
    )


def dispatch_run() -> dict:
    """One tick. Returns what it did, for the logs and the tests."""
    report = {
        "leases_released": leases_release_expired(),
        "orphans": messages_orphaned_to_unknown(),
        "reconciled": messages_reconcile_due(),
        "no_longer_wanted": messages_no_longer_wanted_cancelled(),
        "campaigns_started": lifecycle.campaigns_start_due(),
        "campaigns_completed": lifecycle.campaigns_complete_finished(),
    }
    report["senders_started"] = senders_start_needed()
    if any(report.values()):
        logger.info("dispatch %s", report)
    return report


ORPHANED_ATTEMPT = "the sender stopped mid-send (its worker died)"


def messages_no_longer_wanted_cancelled() -> int:
    """Pending messages of contacts who opted out, or of cancelled campaigns: cancelled.

    Opting out and cancelling cancel what is pending at that moment; this catches a
    message that was in flight then and came back to `pending` afterwards (a retry, or a
    send Wassenger never received). The sender never claims them meanwhile (it only sends
    for sending campaigns and contacts who did not opt out).
    """
    now = clock.now()
    of_opted_out = Message.objects.filter(contact__opted_out_at__isnull=False)
    of_cancelled = Message.objects.filter(campaign__status=CampaignStatus.CANCELLED)
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


def messages_reconcile_due() -> int:
    now = clock.now()
    due = Message.objects.filter(status=MessageStatus.UNKNOWN, next_attempt_at__lte=now).select_related(
        "device", "campaign"
    )[:RECONCILE_BATCH]
    return sum(1 for message in due if message_reconcile(message) is not None)


def senders_start_needed() -> int:
    """A sender for each device with due work, no live sender, no pause and quota left."""
    now = clock.now()
    idle = Device.objects.filter(halted_at__isnull=True).filter(
        Q(lease_owner="") | Q(lease_expires_at__lt=now) | Q(lease_expires_at__isnull=True)
    )
    idle = devices_with_sending_facts(idle.values_list("pk", flat=True), now)
    started = 0
    for device in idle:
        plan = sender_plan(device, now)
        if plan is not None and plan.action in (pacing.Action.SEND, pacing.Action.WAIT):
            sender_enqueue(device.pk)
            started += 1
    return started
