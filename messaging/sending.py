"""The send engine: one sender per device, pacing, exactly-once claims, outcomes.

A sender holds its device's lease, and in a loop asks pacing when the next send may
happen, sleeps until then (renewing the lease), claims the next due message, sends it
through the Wassenger client and records the outcome. It works through one batch and
the pause that follows, then exits so that a successor takes over (DESIGN: leaving each
pause to the one-minute dispatcher would waste up to 90 s a batch).

Exactly once: a message is claimed by moving it from `pending` to `sending` under a row
lock, in the same transaction that takes the day's quota. Nothing ever moves a message
from `sending` or `unknown` back to `pending` without asking Wassenger first
(`message_reconcile`).
"""

import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q

from campaigns.models import CampaignStatus, Contact, WhatsAppStatus
from campaigns.phones import phone_mask
from config import clock
from messaging import pacing, wassenger
from messaging.models import (
    Device,
    DeviceDay,
    Message,
    MessageAttempt,
    MessageKind,
    MessageStatus,
)
from messaging.retries import attempts_left, next_step, retry_delay

logger = logging.getLogger(__name__)

# Sleep in slices no longer than this share of the lease, renewing it in between.
_RENEW_FRACTION = 1 / 3


class SenderExit(StrEnum):
    LEASE_TAKEN = "lease_taken"  # another sender works for this device
    LEASE_LOST = "lease_lost"  # we stalled past our lease and someone took over
    IDLE = "idle"  # nothing due now
    BATCH_DONE = "batch_done"  # a batch and its pause are behind us: hand over
    DAILY_LIMIT = "daily_limit"  # today's quota is spent
    HALTED = "halted"  # the device is halted (auth error, operator)


# --- Lease -------------------------------------------------------------------------------


def lease_acquire(*, device_id: int, owner: str) -> bool:
    """Take the device's lease if it is free or expired: exactly one row must change."""
    now = clock.now()
    free = Q(lease_owner="") | Q(lease_expires_at__lt=now) | Q(lease_expires_at__isnull=True)
    return bool(
        Device.objects.filter(free, pk=device_id).update(lease_owner=owner, lease_expires_at=_lease_end(now))
    )


def lease_renew(*, device_id: int, owner: str) -> bool:
    """Extend our lease; False means it is no longer ours and we must stop at once."""
    now = clock.now()
    return bool(
        Device.objects.filter(pk=device_id, lease_owner=owner, lease_expires_at__gte=now).update(
            lease_expires_at=_lease_end(now)
        )
    )


def lease_release(*, device_id: int, owner: str) -> None:
    Device.objects.filter(pk=device_id, lease_owner=owner).update(lease_owner="", lease_expires_at=None)


def leases_release_expired() -> int:
    return Device.objects.filter(lease_expires_at__lt=clock.now()).update(
        lease_owner="", lease_expires_at=None
    )


def _lease_end(now):
    return now + timedelta(seconds=settings.SENDER_LEASE_SECONDS)


# --- Pacing state from the database -----------------------------------------------------------


def device_policy(device: Device) -> pacing.PacingPolicy:
    return pacing.PacingPolicy(
        gap_seconds=device.gap_seconds,
        batch_size=device.batch_size,
        batch_pause_seconds=device.batch_pause_seconds,
        daily_limit=device.daily_limit,
        message_2_reserve=pacing.reserve_for(device.daily_limit, settings.MESSAGE_2_RESERVE_SHARE),
    )


# The sender's hot path asks this once per send; as one raw statement it costs a fraction
# of what the ORM spends compiling the equivalent four subqueries every time.
# LIMIT 1 keeps each probe correlated (one index probe per device): with stale statistics
# PostgreSQL may otherwise hash the whole subquery, reading every pending row.
_DUE_SQL = """
(SELECT 1 FROM messaging_message m JOIN campaigns_campaign c ON c.id = m.campaign_id
 WHERE m.device_id = d.id AND m.status = 'pending' AND m.kind = '{kind}'
   AND m.next_attempt_at <= %(now)s AND c.status = 'sending' LIMIT 1) IS NOT NULL
"""
_SNAPSHOT_SQL = f"""
SELECT d.*,
  {_DUE_SQL.format(kind=MessageKind.MESSAGE_1)} AS message_1_due,
  {_DUE_SQL.format(kind=MessageKind.MESSAGE_2)} AS message_2_due,
  COALESCE(dd.message_1_count, 0) AS message_1_today,
  COALESCE(dd.message_2_count, 0) AS message_2_today
FROM messaging_device d
LEFT JOIN messaging_deviceday dd ON dd.device_id = d.id AND dd.day = %(day)s
WHERE d.id = ANY(%(ids)s)
ORDER BY d.id
"""


def devices_with_sending_facts(device_ids, now) -> list[Device]:
    """The devices, each with what a plan needs: `message_1_due` / `message_2_due` (an
    index probe each) and today's counts `message_1_today` / `message_2_today`."""
    params = {"ids": list(device_ids), "now": now, "day": now.date()}
    return list(Device.objects.raw(_SNAPSHOT_SQL, params))


def device_snapshot(device_id: int, now) -> Device:
    return devices_with_sending_facts([device_id], now)[0]


def device_state(device: Device, now) -> pacing.DeviceState:
    """Pacing's view of a device returned by `devices_with_sending_facts`."""
    return pacing.DeviceState(
        last_sent_at=device.last_sent_at,
        sent_in_batch=device.sent_in_batch,
        day=now.date(),
        message_1_today=device.message_1_today,
        message_2_today=device.message_2_today,
        paused_until=device.paused_until,
    )


def due_messages(device, now):
    """Pending messages of this device that may go now (their campaign is sending)."""
    return Message.objects.filter(
        device=device,
        status=MessageStatus.PENDING,
        next_attempt_at__lte=now,
        campaign__status=CampaignStatus.SENDING,
    )


@dataclass(frozen=True)
class Plan:
    action: pacing.Action
    not_before: object  # datetime
    kinds: tuple[str, ...]  # the kinds that may be sent at `not_before`, Message 2 first


def sender_plan(device: Device, now) -> Plan | None:
    """What a device (from `devices_with_sending_facts`) should do next; None: nothing due."""
    due = [kind for kind in (MessageKind.MESSAGE_2, MessageKind.MESSAGE_1) if getattr(device, f"{kind}_due")]
    if not due:
        return None
    policy, state = device_policy(device), device_state(device, now)
    decisions = {
        kind: pacing.pacing_decide(policy=policy, state=state, now=now, kind=pacing.Kind(kind))
        for kind in due
    }
    sendable = tuple(kind for kind, d in decisions.items() if d.action == pacing.Action.SEND)
    if sendable:
        return Plan(pacing.Action.SEND, now, sendable)
    waiting = [d for d in decisions.values() if d.action != pacing.Action.DAILY_LIMIT]
    if not waiting:
        return Plan(pacing.Action.DAILY_LIMIT, min(d.not_before for d in decisions.values()), ())
    first = min(waiting, key=lambda d: d.not_before)
    return Plan(first.action, first.not_before, tuple(k for k, d in decisions.items() if d is first))


# --- Claim, send, record ----------------------------------------------------------------------


# Locks the row it returns; a row another sender holds is skipped, never waited for.
_CLAIM_SQL = """
SELECT m.id FROM messaging_message m JOIN campaigns_campaign c ON c.id = m.campaign_id
WHERE m.device_id = %s AND m.status = 'pending' AND m.kind = ANY(%s)
  AND m.next_attempt_at <= %s AND c.status = 'sending'
ORDER BY m.kind DESC, m.id
LIMIT 1
FOR UPDATE OF m SKIP LOCKED
"""


@transaction.atomic
def message_claim(*, device: Device, kinds: tuple[str, ...], now) -> Message | None:
    """Claim the next due message (Message 2 first, then oldest) and take today's quota.

    Returns None if nothing is claimable or the quota for its kind is spent.
    """
    with connection.cursor() as cursor:
        cursor.execute(_CLAIM_SQL, [device.pk, list(kinds), now])
        row = cursor.fetchone()
    if row is None:
        return None
    message = Message.objects.select_related("contact", "campaign", "device").get(pk=row[0])
    policy = device_policy(device)
    counts = quota_take(device=device, day=now.date(), kind=message.kind, policy=policy)
    if counts is None:
        return None
    state = pacing.DeviceState(
        last_sent_at=device.last_sent_at,
        sent_in_batch=device.sent_in_batch,
        day=now.date(),
        message_1_today=counts[0],
        message_2_today=counts[1],
        paused_until=device.paused_until,
    )
    after = pacing.pacing_record_send(policy=policy, state=state, now=now, kind=pacing.Kind(message.kind))
    Device.objects.filter(pk=device.pk).update(
        last_sent_at=after.last_sent_at, sent_in_batch=after.sent_in_batch, paused_until=after.paused_until
    )
    message.status, message.attempts = MessageStatus.SENDING, message.attempts + 1
    message.save(update_fields=["status", "attempts", "updated_at"])
    MessageAttempt.objects.create(message=message, number=message.attempts, started_at=now)
    return message


_QUOTA_ROW_SQL = """
INSERT INTO messaging_deviceday (device_id, day, message_1_count, message_2_count)
VALUES (%s, %s, 0, 0) ON CONFLICT (device_id, day) DO NOTHING
"""
_QUOTA_TAKE_SQL = """
UPDATE messaging_deviceday SET {column} = {column} + 1
WHERE device_id = %s AND day = %s
  AND message_1_count + message_2_count < %s AND {column} < %s
RETURNING message_1_count, message_2_count
"""


def quota_take(*, device: Device, day, kind: str, policy: pacing.PacingPolicy) -> tuple[int, int] | None:
    """Count one send for the device's UTC day, unless that would pass the limit [4.4].

    One guarded UPDATE, so two senders can never both take the last unit. Returns the
    day's (Message 1, Message 2) counts before this send, or None when the quota is spent.
    """
    column = _quota_column(kind)
    with connection.cursor() as cursor:
        cursor.execute(_QUOTA_ROW_SQL, [device.pk, day])
        cursor.execute(
            _QUOTA_TAKE_SQL.format(column=column),
            [device.pk, day, policy.daily_limit, policy.allowance(pacing.Kind(kind))],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    message_1, message_2 = row
    return (message_1 - 1, message_2) if column == "message_1_count" else (message_1, message_2 - 1)


def quota_give_back(*, device_id: int, day, kind: str) -> None:
    """A send that surely did not go out does not count against the day."""
    column = _quota_column(kind)
    DeviceDay.objects.filter(device_id=device_id, day=day, **{f"{column}__gt": 0}).update(
        **{column: F(column) - 1}
    )


def _quota_column(kind: str) -> str:
    return "message_2_count" if kind == MessageKind.MESSAGE_2 else "message_1_count"


def message_payload(message: Message) -> dict:
    """The send_message arguments for this message (text, or Message 1's template)."""
    campaign = message.campaign
    payload = {
        "phone": message.contact.phone,
        "reference": str(message.reference),
        "device": message.device.wassenger_id,
        "priority": "high" if message.kind == MessageKind.MESSAGE_2 else "normal",
    }
    if message.kind == MessageKind.MESSAGE_1 and campaign.message_1_template_name:
        payload["template"] = {
            "name": campaign.message_1_template_name,
            "language": campaign.message_1_template_language,
            "variables": campaign.message_1_template_variables,
        }
    else:
        payload["text"] = message.content
    return payload


def message_deliver(message: Message) -> None:
    """Send a claimed message through Wassenger and record what happened."""
    result, error = None, None
    try:
        result = wassenger.send_message(**message_payload(message))
    except wassenger.WassengerError as exc:
        error = exc
    except ValueError as exc:  # the message itself is unusable (no text): never sendable
        error = wassenger.Rejected(str(exc))
    except Exception as exc:  # a bug below us must not lose the claim: treat as unknown
        logger.exception("unexpected error sending message %s", message.pk)
        error = wassenger.OutcomeUnknown(f"unexpected {type(exc).__name__}")
    message_record_outcome(message=message, result=result, error=error)


@transaction.atomic
def message_record_outcome(*, message: Message, result, error) -> None:
    now = clock.now()
    step = next_step(error, attempts_made=message.attempts, now=now)
    changes = {"status": step.status, "last_error": _describe(error)}
    if step.retry_at is not None:
        changes["next_attempt_at"] = step.retry_at
    if step.status == MessageStatus.SENT:
        changes.update(sent_at=now, wassenger_id=result.wassenger_id, whatsapp_id=result.whatsapp_id or "")
    if step.status == MessageStatus.FAILED:
        changes["failed_at"] = now
    if step.status == MessageStatus.UNKNOWN:
        changes["next_attempt_at"] = now + timedelta(seconds=settings.RECONCILE_AFTER_SECONDS)
    if step.refund_attempt:
        changes["attempts"] = F("attempts") - 1
    # Only a row still ours: a webhook may already have told us it was sent.
    Message.objects.filter(pk=message.pk, status=MessageStatus.SENDING).update(**changes, updated_at=now)
    _attempt_finish(message, step.outcome, error, now)
    _apply_side_effects(message, step, error, now)
    _log_send(message, step, result)


def _attempt_finish(message: Message, outcome: str, error, now) -> None:
    MessageAttempt.objects.filter(message=message, number=message.attempts).update(
        outcome=outcome, finished_at=now, http_status=getattr(error, "status", None), error=_describe(error)
    )


def _apply_side_effects(message: Message, step, error, now) -> None:
    if step.surely_not_sent:
        quota_give_back(device_id=message.device_id, day=_attempt_day(message), kind=message.kind)
    if step.contact_invalid:
        Contact.objects.filter(pk=message.contact_id).update(
            whatsapp_status=WhatsAppStatus.INVALID, whatsapp_checked_at=now
        )
    if step.halt_device:
        Device.objects.filter(pk=message.device_id, halted_at__isnull=True).update(
            halted_at=now, halted_reason=_describe(error)
        )
        logger.error("device %s halted: %s", message.device_id, _describe(error))
    if step.device_wait_until is not None:
        Device.objects.filter(pk=message.device_id).filter(
            Q(paused_until__isnull=True) | Q(paused_until__lt=step.device_wait_until)
        ).update(paused_until=step.device_wait_until)


def _attempt_day(message: Message):
    """The UTC day whose quota the attempt took: the day it started."""
    started = MessageAttempt.objects.filter(message=message, number=message.attempts).values_list(
        "started_at", flat=True
    )
    return started.first().date()


def _describe(error) -> str:
    if error is None:
        return ""
    status = f" HTTP {error.status}" if getattr(error, "status", None) else ""
    return f"{type(error).__name__}{status}: {getattr(error, 'detail', '') or error}"[:500]


def _log_send(message: Message, step, result) -> None:
    # Each Message 1 send is logged with campaign, contact and a masked phone [4.5].
    logger.info(
        "%s campaign=%s contact=%s phone=%s outcome=%s wassenger_id=%s",
        message.kind,
        message.campaign_id,
        message.contact_id,
        phone_mask(message.contact.phone),
        step.outcome,
        getattr(result, "wassenger_id", ""),
    )


# --- Reconciliation ---------------------------------------------------------------------------


def message_reconcile(message: Message) -> str | None:
    """Ask Wassenger whether an `unknown` send went out; settle it, or leave it for later.

    Found → sent. Not found → back to pending after the retry delay (or failed when no
    attempt is left): only now is a re-send safe.
    """
    try:
        remote = (
            wassenger.get_message(message.wassenger_id)
            if message.wassenger_id
            else wassenger.find_message_by_reference(str(message.reference))
        )
    except wassenger.WassengerError as error:
        logger.warning("reconciling message %s failed, will retry: %s", message.pk, _describe(error))
        return None
    return _settle_unknown(message, remote)


@transaction.atomic
def _settle_unknown(message: Message, remote) -> str:
    now = clock.now()
    unknown = Message.objects.filter(pk=message.pk, status=MessageStatus.UNKNOWN)
    if remote is not None:
        unknown.update(
            status=MessageStatus.SENT,
            sent_at=now,
            wassenger_id=remote.wassenger_id,
            whatsapp_id=remote.whatsapp_id or "",
            last_error="",
            updated_at=now,
        )
        return MessageStatus.SENT
    quota_give_back(device_id=message.device_id, day=_attempt_day(message), kind=message.kind)
    if attempts_left(message.attempts):
        retry_at = now + retry_delay(message.attempts)
        unknown.update(status=MessageStatus.PENDING, next_attempt_at=retry_at, updated_at=now)
        return MessageStatus.PENDING
    unknown.update(
        status=MessageStatus.FAILED,
        failed_at=now,
        updated_at=now,
        last_error=f"not accepted by Wassenger after {message.attempts} attempts",
    )
    return MessageStatus.FAILED


# --- The sender loop --------------------------------------------------------------------------


def sender_run(*, device_id: int, owner: str | None = None) -> SenderExit:
    """Work for one device until the end of a batch and its pause, or until nothing is due."""
    lease = LeaseKeeper(device_id=device_id, owner=owner or uuid.uuid4().hex)
    if not lease_acquire(device_id=device_id, owner=lease.owner):
        return SenderExit.LEASE_TAKEN
    try:
        return _send_loop(device_id, lease)
    finally:
        lease_release(device_id=device_id, owner=lease.owner)


@dataclass
class LeaseKeeper:
    """Renews our lease once a third of it has run, instead of at every step."""

    device_id: int
    owner: str
    renewed_at: object = None

    def __post_init__(self):
        self.renewed_at = clock.now()

    def keep(self) -> bool:
        """False when the lease is no longer ours: stop at once."""
        now = clock.now()
        if (now - self.renewed_at).total_seconds() < settings.SENDER_LEASE_SECONDS * _RENEW_FRACTION:
            return True
        self.renewed_at = now
        return lease_renew(device_id=self.device_id, owner=self.owner)


def _send_loop(device_id: int, lease: LeaseKeeper) -> SenderExit:
    sent_here = 0
    while True:
        now = clock.now()
        device = device_snapshot(device_id, now)
        if device.halted_at is not None:
            return SenderExit.HALTED
        plan = sender_plan(device, now)
        if plan is None:
            return SenderExit.IDLE
        if plan.action == pacing.Action.DAILY_LIMIT:
            return SenderExit.DAILY_LIMIT
        if plan.action != pacing.Action.SEND:
            if not _sleep_until(plan.not_before, lease):
                return SenderExit.LEASE_LOST
            if plan.action == pacing.Action.BATCH_PAUSE and sent_here:
                return SenderExit.BATCH_DONE  # our batch and its pause are done: hand over
            continue
        message = message_claim(device=device, kinds=plan.kinds, now=now)
        if message is None:
            return SenderExit.IDLE
        message_deliver(message)
        sent_here += 1
        if not lease.keep():
            return SenderExit.LEASE_LOST


def _sleep_until(moment, lease: LeaseKeeper) -> bool:
    """Sleep until `moment` in slices, keeping the lease; False if it was lost meanwhile."""
    slice_seconds = settings.SENDER_LEASE_SECONDS * _RENEW_FRACTION
    while (remaining := (moment - clock.now()).total_seconds()) > 0:
        clock.sleep(min(remaining, slice_seconds))
        if not lease.keep():
            return False
    return True
