"""The send engine: one device's slot (plan, claim, send, record), outcomes, reconciliation.

`device_step` serves one device when its slot comes: it asks pacing whether a send may
happen now, claims the next due message, sends it through the Wassenger client and records
the outcome. The sender loop (messaging/loop.py) decides when each device's slot comes and
holds the leases; `sender_run` drives the loop for one device, in the calling thread.

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
from django.db import transaction
from django.db.models import F, Q, Value
from django.db.models.functions import Coalesce, Greatest
from django.utils.translation import gettext
from django_q.tasks import async_task

from campaigns.contacts import contact_mark_not_on_whatsapp
from campaigns.media import media_payload
from campaigns.models import CampaignStatus
from config import clock
from config.logging import phone_mask
from messaging import pacing, wassenger
from messaging.claims import (
    Claim,
    device_policy,
    device_snapshot,
    device_state,
    message_claim,
    outcome_store,
    outcome_store_and_claim,
    quota_give_back,
    quota_take_again,
)
from messaging.devices import device_halt
from messaging.models import (
    CANCELLED_WITH_CAMPAIGN,
    Device,
    Message,
    MessageAttempt,
    MessageKind,
    MessageStatus,
)
from messaging.retries import attempts_left, breaker_wait, next_step, retry_delay

logger = logging.getLogger(__name__)


class SenderExit(StrEnum):
    """Why a sender loop let a device go (its lease released)."""

    LEASE_TAKEN = "lease_taken"  # another loop works for this device
    LEASE_LOST = "lease_lost"  # we stalled past our lease and someone took over
    IDLE = "idle"  # nothing due now
    DAILY_LIMIT = "daily_limit"  # today's quota is spent
    HALTED = "halted"  # the device is halted (auth error, operator)
    STOPPED = "stopped"  # the loop was stopped: handed over


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


# --- Planning -------------------------------------------------------------------------------

# While its send window is closed a device is looked at this often (a reply may come).
WINDOW_CLOSED_LOOK = timedelta(seconds=60)


@dataclass(frozen=True)
class Plan:
    action: pacing.Action
    not_before: object  # datetime
    kinds: tuple[str, ...]  # the kinds that may be sent at `not_before`, Message 2 first


# In the claim's order: a test send first (the operator waits for it), then the answers.
_PLANNED_KINDS = (MessageKind.TEST, MessageKind.OPT_OUT, MessageKind.MESSAGE_2, MessageKind.MESSAGE_1)


def sender_plan(device: Device, now) -> Plan | None:
    """What a device (from `devices_with_sending_facts`) should do next; None: nothing due."""
    due = [kind for kind in _PLANNED_KINDS if getattr(device, f"{kind}_due")]
    if not due:
        return None
    policy, state = device_policy(device), device_state(device, now)
    # An answer (Message 2, an opt-out confirmation) may go out of the window for a while after
    # the contact wrote: the latest due one's.
    replied = {pacing.Kind.MESSAGE_2: getattr(device, "message_2_replied_at", None)}
    paced = {kind: pacing.Kind(MessageKind.paced_as(kind)) for kind in due}
    decisions = {
        kind: pacing.pacing_decide(
            policy=policy, state=state, now=now, kind=paced[kind], replied_at=replied.get(paced[kind])
        )
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


def message_payload(claim: Claim, *, device_wassenger_id: str = "") -> dict:
    """The send_message arguments for a claimed message (text, or Message 1's template), with
    the campaign's attachment for its kind, uploaded to Wassenger on its first send."""
    payload = {
        "phone": claim.phone,
        "reference": claim.reference,
        "device": device_wassenger_id,
        "priority": "high" if MessageKind.paced_as(claim.kind) == MessageKind.MESSAGE_2 else "normal",
    }
    if claim.template:
        payload["template"] = claim.template
        return payload
    payload["text"] = claim.content
    attachment = MessageKind.attachment_of(claim.kind)
    if attachment and (media := media_payload(campaign_id=claim.campaign_id, kind=attachment)):
        payload["media"] = media
    return payload


def message_send(claim: Claim, *, device_wassenger_id: str = "") -> tuple:
    """POST a claimed message: (result, None) if accepted, else (None, the WassengerError)."""
    try:
        return wassenger.send_message(**message_payload(claim, device_wassenger_id=device_wassenger_id)), None
    except wassenger.WassengerError as exc:
        return None, exc
    except ValueError as exc:  # the message itself is unusable (no text): never sendable
        return None, wassenger.Rejected(str(exc))
    except Exception as exc:  # a bug below us must not lose the claim: treat as unknown
        logger.exception("unexpected error sending message %s", claim.message_id)
        return None, wassenger.OutcomeUnknown(f"unexpected {type(exc).__name__}")


def message_record_outcome(
    *, claim: Claim, result, error, then_claim_for: Device | None = None, owner: str | None = None
) -> Claim | None:
    """Record what became of a send. With `then_claim_for` (the sender's in-memory device),
    an accepted send whose device may send again at once also claims the next message, in
    the same statement (one round trip and one commit fewer a message), under `owner`'s
    lease: that claim is returned, or None when there was none (`message_claim` then looks
    again)."""
    now = clock.now()
    step = next_step(error, attempts_made=claim.attempts, now=now)
    changes = {"status": step.status, "error": _describe(error), "next_attempt_at": step.retry_at}
    if step.status == MessageStatus.SENT:
        changes.update(sent_at=now, wassenger_id=result.wassenger_id, whatsapp_id=result.whatsapp_id or "")
    if step.status == MessageStatus.FAILED:
        changes["failed_at"] = now
    if step.status == MessageStatus.UNKNOWN:
        changes["next_attempt_at"] = now + timedelta(seconds=settings.RECONCILE_AFTER_SECONDS)
    if step.refund_attempt:
        changes["refund"] = 1
    store = {"claim": claim, "outcome": step.outcome, "changes": changes, "now": now}
    store["http_status"] = getattr(error, "status", None)
    claimed = None
    if _has_side_effects(step):
        with transaction.atomic():
            stored = outcome_store(**store)
            _apply_side_effects(claim, step, error, now, settled=stored.settled)
    elif kinds := _kinds_sendable_now(then_claim_for, step, now):
        stored, claimed = outcome_store_and_claim(**store, device=then_claim_for, kinds=kinds, owner=owner)
    else:  # one statement, no transaction needed
        stored = outcome_store(**store)
    if stored.settled and stored.events_waiting and step.status != MessageStatus.UNKNOWN:
        _release_waiting(claim.message_id)
    _log_send(claim, step, result)
    return claimed


# Webhook events waiting for a settled message's outcome (named: webhooks depends on messaging).
RELEASE_WAITING_TASK = "webhooks.tasks.release_waiting"


def _release_waiting(message_id: int) -> None:
    """A reply (or receipt) that waited for this send's outcome is processed now, not at the
    next sweep: rare (it came while the request was in flight), so a task of its own."""
    transaction.on_commit(lambda: async_task(RELEASE_WAITING_TASK, message_id), robust=True)


def _kinds_sendable_now(device: Device | None, step, now) -> tuple[str, ...]:
    """The kinds the device may send at `now` after an accepted send, else ()."""
    if device is None or step.status != MessageStatus.SENT or device.halted_at is not None:
        return ()
    plan = sender_plan(device, now)
    return plan.kinds if plan is not None and plan.action == pacing.Action.SEND else ()


def _has_side_effects(step) -> bool:
    return bool(step.surely_not_sent or step.contact_invalid or step.halt_device or step.link_failed)


def _apply_side_effects(claim: Claim, step, error, now, *, settled: bool) -> None:
    # Not settled: a receipt got there first and proved the send, which keeps its slot.
    if step.surely_not_sent and settled:
        quota_give_back(device_id=claim.device_id, day=claim.started_at.date(), kind=claim.kind)
    if step.contact_invalid and claim.kind != MessageKind.TEST:  # a test's number is not the contact's
        contact_mark_not_on_whatsapp(contact_id=claim.contact_id, now=now)
    if step.halt_device:
        device_halt(device_id=claim.device_id, reason=_halt_reason(error), now=now)
        logger.error("device %s halted: %s", claim.device_id, _describe(error))
    if step.link_failed:
        device_link_failed(device_id=claim.device_id, now=now, at_least=step.link_wait_at_least)


def device_link_failed(*, device_id: int, now, at_least: timedelta | None = None) -> None:
    """The device's link to Wassenger failed: its breaker opens (or stays open) and the
    device waits `breaker_wait` of its failures in a row (a 429: at least `at_least`). No
    message is claimed meanwhile: the wait is the device's pause, which pacing obeys; the
    first send after it is the one probe of the wait."""
    failures = Device.objects.filter(pk=device_id).values_list("link_failures", flat=True).first() or 0
    wait = max(breaker_wait(failures + 1), at_least or timedelta(0))
    Device.objects.filter(pk=device_id).update(
        link_failures=F("link_failures") + 1,
        link_down_since=Coalesce("link_down_since", Value(now)),
        paused_until=Greatest(Coalesce("paused_until", Value(now)), Value(now + wait)),
    )
    logger.warning(
        "device %s: link to Wassenger failed %s times in a row, waits %s", device_id, failures + 1, wait
    )


def device_link_ok(*, device_id: int) -> None:
    """One accepted send closes the breaker (the loop calls it only when it was open)."""
    Device.objects.filter(pk=device_id, link_failures__gt=0).update(link_failures=0, link_down_since=None)


def _attempt_day(message: Message):
    """The UTC day whose quota the message's last attempt took: the day it started."""
    return (_last_attempt_start(message) or message.sent_at or clock.now()).date()


def _last_attempt_start(message: Message):
    started = MessageAttempt.objects.filter(message=message).order_by("-number")
    return started.values_list("started_at", flat=True).first()


def message_counts_again(message: Message) -> None:
    """A send given up as never made went out after all (a receipt says so): the quota
    slot given back for its last attempt is taken again, on that attempt's day."""
    quota_take_again(device_id=message.device_id, day=_attempt_day(message), kind=message.kind)


def message_counts_no_more(message: Message) -> None:
    """Wassenger gave a queued send up unsent (expired, removed): its slot is given back."""
    quota_give_back(device_id=message.device_id, day=_attempt_day(message), kind=message.kind)


def _halt_reason(error) -> str:
    """What the operator reads on the halted device (a refusal of the device names what to check)."""
    if isinstance(error, wassenger.DeviceRefused):
        return gettext(
            "Wassenger refuses messages from this number (check the device, its queue, the "
            "template and the account): %(error)s"
        ) % {"error": _describe(error)}
    return _describe(error)


def _describe(error) -> str:
    if error is None:
        return ""
    status = f" HTTP {error.status}" if getattr(error, "status", None) else ""
    return f"{type(error).__name__}{status}: {getattr(error, 'detail', '') or error}"[:500]


def _log_send(claim: Claim, step, result) -> None:
    # Each Message 1 send is logged with campaign, contact and a masked phone [4.5].
    logger.info(
        "%s campaign=%s contact=%s phone=%s outcome=%s wassenger_id=%s",
        claim.kind,
        claim.campaign_id,
        claim.contact_id,
        phone_mask(claim.phone),
        step.outcome,
        getattr(result, "wassenger_id", ""),
    )


# --- Reconciliation ---------------------------------------------------------------------------


def message_reconcile(message: Message, *, timeout: float | None = None) -> str | None:
    """Ask Wassenger whether an `unknown` send went out; settle it, or leave it for later.

    Wassenger's word is believed: found failed, invalid, expired or removed → failed with
    its reason; found queued, processing or further → sent (delivered, read) at Wassenger's
    own times. Not found → back to pending after the retry delay (or failed when no attempt
    is left): only now is a re-send safe.
    """
    limit = {"timeout": timeout} if timeout else {}  # the dispatcher's budget: a short lookup
    try:
        remote = (
            wassenger.get_message(message.wassenger_id, **limit)
            if message.wassenger_id
            else wassenger.find_message_by_reference(str(message.reference), **limit)
        )
    except wassenger.WassengerError as error:
        logger.warning("reconciling message %s failed, will retry: %s", message.pk, _describe(error))
        return None
    return _settle_unknown(message, remote)


# Wassenger's rank of a message (RemoteMessage.rank) → our status and the time it stamps.
_FOUND_AT_RANK = {
    1: (MessageStatus.SENT, "sent_at"),
    2: (MessageStatus.DELIVERED, "delivered_at"),
    3: (MessageStatus.READ, "read_at"),
}
# last_error of a failure Wassenger reported (webhooks/processing.py reads it the same way).
REPORTED_FAILURE = "Wassenger: "


@transaction.atomic
def _settle_unknown(message: Message, remote) -> str:
    now = clock.now()
    if remote is not None and remote.failed:
        reason = remote.failure_reason or remote.status or remote.delivery_status or "no reason given"
        changes = {"status": MessageStatus.FAILED, "failed_at": remote.failed_at or now}
        changes.update(last_error=f"{REPORTED_FAILURE}{reason}"[:500], **_remote_ids(remote))
    elif remote is not None:
        changes = _found_sent(message, remote)
    elif message.campaign.status == CampaignStatus.CANCELLED:
        # Never sent, and its campaign is gone: it joins the other cancelled messages.
        changes = {"status": MessageStatus.CANCELLED, "last_error": CANCELLED_WITH_CAMPAIGN}
    elif _no_answer_came_back(message):
        # A timeout, a dropped connection or a dead worker, and Wassenger never got it: the
        # link failed, not the message, which keeps its place and its attempt.
        changes = {"status": MessageStatus.PENDING, "next_attempt_at": now}
        changes["attempts"] = max(message.attempts - 1, 0)
    elif attempts_left(message.attempts):
        changes = {"status": MessageStatus.PENDING, "next_attempt_at": now + retry_delay(message.attempts)}
    else:
        changes = {"status": MessageStatus.FAILED, "failed_at": now}
        changes["last_error"] = f"not accepted by Wassenger after {message.attempts} attempts"
    unknown = Message.objects.filter(pk=message.pk, status=MessageStatus.UNKNOWN)
    if not unknown.update(**changes, updated_at=now):
        # A receipt settled it while we looked it up: it went out, and keeps its slot.
        return Message.objects.filter(pk=message.pk).values_list("status", flat=True).first()
    if remote is None or remote.given_up:  # never went out: its slot is not a send
        quota_give_back(device_id=message.device_id, day=_attempt_day(message), kind=message.kind)
    if remote is not None and remote.not_on_whatsapp and message.kind != MessageKind.TEST:
        contact_mark_not_on_whatsapp(contact_id=message.contact_id, now=now)
    _log_settled(message, changes, remote)
    _release_waiting(message.pk)
    return changes["status"]


def _no_answer_came_back(message: Message) -> bool:
    """The message's last attempt got no HTTP answer at all."""
    last = MessageAttempt.objects.filter(message=message).order_by("-number").values_list("http_status")
    return last.first() == (None,)


def _remote_ids(remote) -> dict:
    return {"wassenger_id": remote.wassenger_id, "whatsapp_id": remote.whatsapp_id or ""}


def _found_sent(message: Message, remote) -> dict:
    """A found message went out when Wassenger says (sentAt, else createdAt), never at the
    time of the lookup; with neither, when our attempt started. Further ranks (delivered,
    read) are stamped at Wassenger's own times where it gives them, else at the send's."""
    sent_at = remote.sent_at or remote.created_at or _last_attempt_start(message) or clock.now()
    status, _ = _FOUND_AT_RANK[min(remote.rank, 3)]
    changes = {"status": status, "sent_at": sent_at, "last_error": "", **_remote_ids(remote)}
    own = {"delivered_at": remote.delivered_at, "read_at": remote.read_at}
    for rank in range(2, min(remote.rank, 3) + 1):
        field = _FOUND_AT_RANK[rank][1]
        changes[field] = own[field] or sent_at
    return changes


def _log_settled(message: Message, changes: dict, remote) -> None:
    found = f"found {remote.status or '?'}/{remote.delivery_status or '?'}" if remote else "not found"
    logger.info(
        "reconciled %s campaign=%s contact=%s phone=%s: unknown → %s (%s at Wassenger) wassenger_id=%s",
        message.kind,
        message.campaign_id,
        message.contact_id,
        phone_mask(message.phone or message.contact.phone),
        changes["status"],
        found,
        getattr(remote, "wassenger_id", ""),
    )


# --- One device's slot -------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """What serving a device's slot came to: `exit` set means the loop lets the device go
    (its lease released); otherwise it looks again at `at`, with `device` as the snapshot
    to plan from (None: read afresh then)."""

    exit: SenderExit | None = None
    at: object = None  # datetime
    device: Device | None = None


def device_step(
    *, device_id: int, owner: str | None, device: Device | None = None, keep=lambda: True
) -> Step:
    """Serve one device now: plan, claim, send, record; as long as pacing allows the next
    send at once (no gap), it follows in the same step. `keep()` false (the lease is lost,
    or the loop is stopping) claims nothing more; a send in flight is always recorded."""
    fresh, claim = False, None
    while True:
        if claim is None:
            now = clock.now()
            # After an accepted send the snapshot is kept current in memory (see message_claim);
            # after anything else (a wait, a refusal, nothing to claim) the device is read afresh.
            if device is None:
                device, fresh = device_snapshot(device_id, now), True
            done = _step_without_send(device, now, keep)
            if done is not None:
                return done
            claim = message_claim(device=device, kinds=sender_plan(device, now).kinds, now=now, owner=owner)
            if claim is None:
                if fresh:
                    return Step(SenderExit.IDLE)
                device = None  # the in-memory view may be stale: look again before giving up
                continue
        result, error = message_send(claim, device_wassenger_id=device.wassenger_id)
        # No claim rides on the outcome of the send that closes the breaker: it is recorded first.
        breaker_open, fresh = bool(device.link_failures), False
        then = device if keep() and not breaker_open else None
        claim = message_record_outcome(
            claim=claim, result=result, error=error, then_claim_for=then, owner=owner
        )
        if error is None and breaker_open:
            device_link_ok(device_id=device_id)
        if error is not None or breaker_open:
            device = None


def _step_without_send(device: Device, now, keep) -> Step | None:
    """The step when the device may not send now; None when it may."""
    if device.halted_at is not None:
        return Step(SenderExit.HALTED)
    plan = sender_plan(device, now)
    if plan is None:
        return Step(SenderExit.IDLE)
    if plan.action == pacing.Action.DAILY_LIMIT:
        return Step(SenderExit.DAILY_LIMIT, plan.not_before)
    if plan.action == pacing.Action.WINDOW_CLOSED:
        # Looked at again meanwhile: a reply's Message 2 may go out before the window opens.
        return Step(None, min(plan.not_before, now + WINDOW_CLOSED_LOOK), None)
    if plan.action != pacing.Action.SEND:
        return Step(None, plan.not_before, None)
    if not keep():
        return Step(None, now, device)
    return None


def sender_run(*, device_id: int, owner: str | None = None) -> SenderExit:
    """Serve one device through the sender loop, in this thread, until it has nothing due
    (pauses and waits included); why it let the device go. For tests and the shell: in
    production `manage.py run_senders` serves every device."""
    from messaging.loop import SenderLoop

    exits = SenderLoop(owner=owner or uuid.uuid4().hex, threads=0, only={device_id}).run(until_idle=True)
    if device_id in exits:
        return exits[device_id]
    taken = Device.objects.filter(pk=device_id, lease_expires_at__gte=clock.now()).exclude(lease_owner="")
    return SenderExit.LEASE_TAKEN if taken.exists() else SenderExit.IDLE
