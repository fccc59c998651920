"""Acting on stored webhook events: receipts, failures, replies, opt-outs, sessions.

Each event is processed in its own transaction while its row is locked, and only while
it is `received`: a second run, a redelivered task or the sweeper finds it done and
changes nothing. Handlers are order-independent: a message's status only moves forward
(sent < delivered < read), a late "delivered" after "read" changes nothing, and a
reply's Message 2 is created at most once (the Message 1 row is locked, and the unique
(campaign, contact, kind) constraint backs that up).
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django_q.tasks import async_task

from campaigns.contacts import contact_mark_not_on_whatsapp
from campaigns.models import Contact
from config import clock
from messaging.devices import device_session_apply
from messaging.models import Device, Message, MessageKind, MessageStatus
from messaging.sending import REPORTED_FAILURE, message_counts_again, message_counts_no_more
from messaging.wassenger import payloads
from messaging.wassenger.payloads import EXPIRED_EVENTS, FAILED_EVENT, INBOUND_EVENT, SESSION_EVENT
from webhooks import replies
from webhooks.inbound import inbound_record, inbound_written_at
from webhooks.ingest import MAX_ID, PROCESS_TASK, Described, event_describe
from webhooks.models import EventStatus, InboundOutcome, WebhookEvent

logger = logging.getLogger(__name__)

SWEEP_BATCH = 500
REASON_LIMIT = 2000

# How far each status has got; a receipt never moves a message back.
_RANK = {MessageStatus.SENT: 1, MessageStatus.DELIVERED: 2, MessageStatus.READ: 3}
_STATUS_AT_RANK = {rank: status for status, rank in _RANK.items()}
_ACK_RANK = payloads.ACK_RANK  # Wassenger's words, `readed` (sic) included; lookups read it too
# (field, rank that implies it, key of data.events holding its date)
_TIMES = (("sent_at", 1, "sent"), ("delivered_at", 2, "delivered"), ("read_at", 3, "read"))
_FAILED_ACKS = frozenset({"failed", "error"})
# Statuses a receipt or a failure can no longer change.
_FINAL = frozenset({MessageStatus.FAILED, MessageStatus.CANCELLED})
# Statuses whose quota slot was given back (the sender or reconciliation concluded the send
# never went out), when Wassenger did not say so itself: a receipt proves they did.
_GIVEN_UP = frozenset({MessageStatus.PENDING, *_FINAL})
_REPORTED_FAILURE = REPORTED_FAILURE  # last_error of a failure Wassenger reported (webhook or lookup)


class NotYet(Exception):
    """Nothing to act on yet (say, a receipt for a send whose answer is not recorded):
    the event stays `received` and the sweeper tries again."""


class WaitsFor(NotYet):
    """The event needs the outcome of a message still `sending` or `unknown`: it waits,
    without spending an attempt, until that message is settled (events_sweep, events_release)."""

    def __init__(self, message_id: int, reason: str):
        super().__init__(reason)
        self.message_id = message_id


# Statuses of a send with no outcome yet.
_IN_FLIGHT = (MessageStatus.SENDING, MessageStatus.UNKNOWN)


# --- Processing one event -------------------------------------------------------------------


def event_process(*, event_id: int) -> str:
    """Process one stored event if it is still waiting; return its status afterwards."""
    with transaction.atomic():
        # skip_locked: if another worker holds it, that worker finishes it (or, if it
        # dies, its transaction rolls back and the sweeper takes it up).
        locked = WebhookEvent.objects.select_for_update(skip_locked=True)
        event = locked.filter(pk=event_id, status=EventStatus.RECEIVED).first()
        if event is None:
            return WebhookEvent.objects.filter(pk=event_id).values_list("status", flat=True).first() or ""
        status, reason, waiting_for = _attempt(event)
        event.attempts += waiting_for is None  # waiting for a send's outcome spends no attempt
        event.status, event.reason, event.waiting_for_id = status, reason[:REASON_LIMIT], waiting_for
        event.processed_at = None if status == EventStatus.RECEIVED else clock.now()
        event.save(update_fields=["status", "reason", "attempts", "processed_at", "waiting_for"])
    return status


def _attempt(event: WebhookEvent) -> tuple[str, str, int | None]:
    for _ in range(_JUDGED_AGAIN):
        try:
            return (*_attempt_once(event), None)
        except WaitsFor as waits:
            waiting = waits
            if _wait_for(waiting.message_id):
                break
            # Settled while we looked: judged again, with its outcome.
    if event.event == INBOUND_EVENT:
        _record_waiting(event)
    return EventStatus.RECEIVED, f"waits: {waiting}", waiting.message_id


# A message settled while its event looked is rare; twice in a row, the sweep takes over.
_JUDGED_AGAIN = 3


def _wait_for(message_id: int) -> bool:
    """Flag the message as awaited, if it is still unsettled; False when it is settled.

    The flag is written under the message's row lock: a sender settling it at this moment
    either finishes first (then its status is no longer in flight here: False) or waits for
    this transaction and reads the flag in the row it settles (then the sender releases the
    event). Either way the event is processed as soon as the outcome is known."""
    unsettled = Message.objects.filter(pk=message_id, status__in=_IN_FLIGHT)
    return unsettled.update(events_waiting=True) == 1


def _attempt_once(event: WebhookEvent) -> tuple[str, str]:
    try:
        with transaction.atomic():  # a savepoint: a failed handler leaves nothing behind
            return _apply(event)
    except WaitsFor:
        raise
    except NotYet as waiting:
        return _again_or(event, EventStatus.PROCESSED, str(waiting))
    except Exception as error:
        logger.exception("webhook event %s (%s) failed", event.pk, event.event)
        return _again_or(event, EventStatus.FAILED, f"{type(error).__name__}: {error}")


def _again_or(event: WebhookEvent, final: str, reason: str) -> tuple[str, str]:
    """Wait for the next sweep, or give up with `final` once the attempts are spent."""
    if event.attempts + 1 < settings.WEBHOOK_MAX_ATTEMPTS:
        return EventStatus.RECEIVED, f"will retry: {reason}"
    return final, reason


def _record_waiting(event: WebhookEvent) -> None:
    """A reply waiting for its Message 1 is listed already, as waiting (no contact row locked:
    nothing acts on it yet)."""
    phone = replies.contact_phone(event.payload)
    contact = Contact.objects.filter(phone=phone).first() if phone else None
    _inbound_row(event, phone, contact, replies.Verdict(InboundOutcome.WAITING, ""))


def _apply(event: WebhookEvent) -> tuple[str, str]:
    described = event_describe(event.payload)
    if described.problem:
        return EventStatus.REJECTED, described.problem
    handler = _HANDLERS.get(described.event, _outbound)
    return EventStatus.PROCESSED, handler(event.payload, described, event)


# --- Outbound: receipts and failures ------------------------------------------------------------


def _outbound(item: dict, described: Described, event: WebhookEvent) -> str:
    data = payloads.event_data(item)
    message = _our_message(item, data)
    if message is None:
        return "not a Relance message (its reference is not ours)"
    was_in_flight = message.status in _IN_FLIGHT
    reason = _record_outbound(message, data, described)
    if was_in_flight and message.status not in _IN_FLIGHT:
        events_release(message_ids=[message.pk])  # a receipt settled it: what waited goes on
    return reason


def _record_outbound(message: Message, data: dict, described: Described) -> str:
    if described.event in EXPIRED_EVENTS:
        return _record_expired(message, data, described)
    failed = described.event == FAILED_EVENT or described.ack.lower() in _FAILED_ACKS
    if failed:
        return _record_failure(message, data, described)
    return _record_progress(message, _rank_of(described), data, described)


def _our_message(item: dict, data: dict) -> Message | None:
    """Our message, locked: by our reference, else by Wassenger's or WhatsApp's id.

    None when the reference names no message of ours; NotYet when only ids are given
    and none matches yet (the send's answer, which records them, may still be on its way).
    """
    locked = Message.objects.select_for_update()
    reference = _as_uuid(payloads.message_reference(data))
    if reference is not None:
        return locked.filter(reference=reference).first()
    ids = payloads.message_ids(item)
    hex_ids = {i for i in ids if payloads.WASSENGER_ID.match(i)}
    message = locked.filter(Q(wassenger_id__in=hex_ids) | Q(whatsapp_id__in=ids)).order_by("pk").first()
    if message is None:
        missing = f"no Relance message has id {', '.join(sorted(ids))}"
        if (in_flight := _in_flight_to(payloads.outbound_recipient(data))) is not None:
            raise WaitsFor(in_flight, f"{missing}; message {in_flight} to this number is still being sent")
        raise NotYet(missing)
    return message


def _in_flight_to(number: str) -> int | None:
    """A message to `number` whose send has no outcome yet (its ids may be the receipt's)."""
    phone = replies.phone_or_raw(number)
    if not phone:
        return None
    in_flight = Message.objects.filter(contact__phone=phone, status__in=_IN_FLIGHT)
    return in_flight.values_list("pk", flat=True).order_by("pk").first()


def _rank_of(described: Described) -> int:
    # Any event about an outbound message means Wassenger has it: at least "sent".
    if described.event == "message:out:ack":
        return _ACK_RANK.get(described.ack.lower(), 0)
    return max(1, _ACK_RANK.get(described.ack.lower(), 1))


def _record_progress(message: Message, rank: int, data: dict, described: Described) -> str:
    if rank == 0:
        return f"ack {described.ack!r} means nothing to Relance"
    given_up = _given_up(message)
    if message.status in _FINAL and not given_up:
        return f"message {message.pk} is {message.status}: receipt ignored"
    before = message.status
    if rank > _RANK.get(message.status, 0) or given_up:
        message.status = _STATUS_AT_RANK[rank]
    fields = _stamp_times(message, rank, data, described.occurred_at)
    fields |= _link_ids(message, data)
    if given_up:  # what we concluded about it was wrong: it went out
        message.failed_at, message.last_error = None, ""
        fields |= {"failed_at", "last_error"}
    if not fields and message.status == before:
        return f"message {message.pk} already {message.status}: nothing to change"
    message.save(update_fields=[*fields, "status", "updated_at"])
    if given_up:
        message_counts_again(message)
    return f"message {message.pk}: {before} → {message.status}"


def _given_up(message: Message) -> bool:
    """We concluded the send never went out and gave its quota back (pending again, or
    failed or cancelled by us, not by a failure Wassenger reported)."""
    reported = message.status == MessageStatus.FAILED and message.last_error.startswith(_REPORTED_FAILURE)
    return message.status in _GIVEN_UP and not reported


def _stamp_times(message: Message, rank: int, data: dict, occurred: datetime | None) -> set[str]:
    """Fill sent/delivered/read times the message lacks, from the event where it says."""
    fallback = occurred or clock.now()
    stamped = set()
    for field, needed, key in _TIMES:
        if rank >= needed and getattr(message, field) is None:
            moment = payloads.status_time(data, status=key) or fallback
            setattr(message, field, moment)
            stamped.add(field)
    return stamped


def _other_copy(message: Message, data: dict) -> str:
    """The event's id when it names another copy than the one recorded, else "".

    A send whose answer was lost, and that reconciliation could not find, goes out again
    under the same reference: the first copy's failure must not fail the second.
    """
    wassenger_id, whatsapp_id = payloads.message_event_ids(data)
    if wassenger_id and message.wassenger_id and wassenger_id != message.wassenger_id:
        return wassenger_id
    if whatsapp_id and message.whatsapp_id and whatsapp_id != message.whatsapp_id:
        return whatsapp_id
    return ""


def _link_ids(message: Message, data: dict) -> set[str]:
    """Remember Wassenger's and WhatsApp's ids when the send's own answer was lost.

    Format B's data.id is Wassenger's 24-hex id; Format A's is the WhatsApp id.
    """
    wassenger_id, whatsapp_id = payloads.message_event_ids(data)
    whatsapp_id = whatsapp_id if len(whatsapp_id) <= MAX_ID else ""  # the column's width
    linked = set()
    if wassenger_id and not message.wassenger_id:
        message.wassenger_id = wassenger_id
        linked.add("wassenger_id")
    if whatsapp_id and not message.whatsapp_id:
        message.whatsapp_id = whatsapp_id
        linked.add("whatsapp_id")
    return linked


def _as_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value) if value else None
    except ValueError:
        return None


def _record_failure(message: Message, data: dict, described: Described) -> str:
    reason = payloads.failure_reason(data) or "no reason given"
    invalid = payloads.failure_names_missing_number(reason)
    if invalid and message.kind != MessageKind.TEST:  # a test send's number is not the contact's
        contact_mark_not_on_whatsapp(contact_id=message.contact_id)
    if message.status in (MessageStatus.DELIVERED, MessageStatus.READ, *_FINAL):
        return f"message {message.pk} is {message.status}: failure ignored" + (", contact invalid" * invalid)
    if other := _other_copy(message, data):
        return f"failure of another copy ({other}) of message {message.pk}, which went out again: ignored"
    before = message.status
    message.status, message.failed_at = MessageStatus.FAILED, described.occurred_at or clock.now()
    message.last_error = f"{_REPORTED_FAILURE}{reason}"[:500]
    message.save(update_fields=["status", "failed_at", "last_error", "updated_at"])
    return f"message {message.pk}: {before} → failed ({reason})" + (", contact invalid" * invalid)


# Counted against the day's quota when Wassenger gave them up: a claim took their slot.
_COUNTED = frozenset({MessageStatus.SENDING, MessageStatus.SENT, MessageStatus.UNKNOWN})


def _record_expired(message: Message, data: dict, described: Described) -> str:
    """Wassenger gave the message up unsent (`message:out:expired` / `:removed`, say after
    waiting in the queue of an offline number): failed with that reason, and its quota
    slot is given back, as for a send that never went out."""
    what = described.event.rsplit(":", 1)[-1]
    if message.status in (MessageStatus.DELIVERED, MessageStatus.READ, *_FINAL):
        return f"message {message.pk} is {message.status}: {what} ignored"
    if other := _other_copy(message, data):
        return f"{what} of another copy ({other}) of message {message.pk}: ignored"
    before, counted = message.status, message.status in _COUNTED
    reason = payloads.failure_reason(data) or f"{what} in Wassenger's queue, never sent"
    message.status, message.failed_at = MessageStatus.FAILED, described.occurred_at or clock.now()
    message.last_error = f"{_REPORTED_FAILURE}{what}: {reason}"[:500]
    message.save(update_fields=["status", "failed_at", "last_error", "updated_at"])
    if counted:
        message_counts_no_more(message)
    return f"message {message.pk}: {before} → failed ({what})"


# --- Inbound: replies and opt-outs -----------------------------------------------------------------


def _inbound(item: dict, described: Described, event: WebhookEvent) -> str:
    data = payloads.event_data(item)
    phone = replies.contact_phone(item)
    if kind := payloads.inbound_kind(data):
        contact = None
        verdict = replies.Verdict(InboundOutcome.GROUP, f"{kind} message: stored, never a reply")
    else:
        contact = Contact.objects.select_for_update().filter(phone=phone).first() if phone else None
        verdict = _inbound_verdict(data, phone, contact, event)
    _inbound_row(event, phone, contact, verdict)
    return verdict.reason


def _inbound_row(event: WebhookEvent, phone: str, contact: Contact | None, verdict) -> None:
    item = event.payload
    device = _event_device(item, payloads.session_device_id(item))
    phone = phone or payloads.inbound_lid(payloads.event_data(item) or {})
    inbound_record(
        event=event, item=item, phone=phone, contact=contact, device_id=device and device.pk, verdict=verdict
    )


def _inbound_verdict(data: dict, phone: str, contact: Contact | None, event: WebhookEvent) -> replies.Verdict:
    if contact is None:
        return replies.Verdict(InboundOutcome.UNKNOWN_SENDER, replies.unplaced_reason(data, phone))
    if replies.is_stop_word(payloads.reply_text(data)):
        return replies.opt_out_record(contact=contact)
    # A reply waits for the outcome of a Message 1 still in flight, however long that takes
    # (until then, judged on what is known, it would find no Message 1 sent).
    in_flight = replies.message_1_in_flight(contact)
    if in_flight is not None:
        reason = f"message {in_flight} to this contact is still being sent: the reply waits for it"
        raise WaitsFor(in_flight, reason)
    return replies.reply_record(contact=contact, replied_at=inbound_written_at(event))


# --- number:session -----------------------------------------------------------------------------


def _session(item: dict, described: Described, event: WebhookEvent) -> str:
    device = _event_device(item, described.message_id, lock=True)
    if device is None:
        return "no Relance device for this number: nothing to do"
    if _newer_session_event_exists(event, described):
        return "an newer session event for this device was already processed: ignored"
    # Only `online` sends; every other state halts with its reason, `online` lifts only a
    # halt of the session (an operator's or an auth error's stays): messaging/devices.py.
    outcome = device_session_apply(device_id=device.pk, status=described.ack)
    if outcome in ("halted", "reworded"):
        logger.error("device %s halted: WhatsApp session %s", device, described.ack)
    elif outcome == "resumed":
        logger.warning("device %s resumed: WhatsApp session online", device)
    return f"device {device}: session {described.ack}, {outcome}"


def _event_device(item: dict, wassenger_id: str, *, lock: bool = False) -> Device | None:
    """The device an event is about: by Wassenger's id or its number, else the only one."""
    devices = Device.objects.select_for_update() if lock else Device.objects.all()
    phone = payloads.session_device_phone(item)
    match = Q(wassenger_id=wassenger_id) if wassenger_id else Q(pk__in=[])
    device = devices.filter(match | Q(phone=phone) if phone else match).first()
    if device is None and Device.objects.count() == 1:
        # One device whose Wassenger id is left empty sends from the account's only number.
        device = devices.filter(wassenger_id="").first()
    return device


def _newer_session_event_exists(event: WebhookEvent, described: Described) -> bool:
    if described.occurred_at is None:
        return False
    return WebhookEvent.objects.filter(
        event=SESSION_EVENT,
        message_id=described.message_id,
        status=EventStatus.PROCESSED,
        occurred_at__gt=described.occurred_at,
    ).exists()


_HANDLERS: dict[str, Callable[[dict, Described, WebhookEvent], str]] = {
    INBOUND_EVENT: _inbound,
    SESSION_EVENT: _session,
}


# --- Batches: the sweeper, the admin, the hourly window ---------------------------------------------


def events_sweep() -> dict:
    """Process events still waiting (cluster down on arrival, a crash, a retry due), and
    those that waited for a send's outcome once it is known."""
    cutoff = clock.now() - timedelta(seconds=settings.WEBHOOK_SWEEP_AFTER_SECONDS)
    ids = list(_due_events(cutoff).order_by("received_at").values_list("pk", flat=True)[:SWEEP_BATCH])
    outcome = Counter(event_process(event_id=pk) for pk in ids)
    if ids:
        logger.info("webhook sweep: %s", dict(outcome))
    return dict(outcome)


def _due_events(cutoff):
    unsettled = Message.objects.filter(pk=OuterRef("waiting_for_id"), status__in=_IN_FLIGHT)
    waiting = WebhookEvent.objects.filter(status=EventStatus.RECEIVED)
    retry_due = Q(waiting_for__isnull=True, received_at__lte=cutoff)
    return waiting.filter(retry_due | Q(waiting_for__isnull=False) & ~Exists(unsettled))


def events_release(*, message_ids) -> int:
    """Process, once committed, the events that waited for these messages' outcome (called
    where a send is settled); returns how many were queued."""
    waiting = WebhookEvent.objects.filter(status=EventStatus.RECEIVED, waiting_for_id__in=list(message_ids))
    ids = list(waiting.values_list("pk", flat=True))
    cluster = settings.Q_CLUSTER["name"]
    for pk in ids:
        transaction.on_commit(partial(async_task, PROCESS_TASK, pk, cluster=cluster), robust=True)
    return len(ids)


def events_reprocess(*, event_ids: list[int]) -> dict:
    """Process the events again from their raw payload (the admin's "reprocess")."""
    WebhookEvent.objects.filter(pk__in=event_ids).update(
        status=EventStatus.RECEIVED, attempts=0, processed_at=None
    )
    return dict(Counter(event_process(event_id=pk) for pk in event_ids))


def windows_expire() -> int:
    """Message 1s sent longer ago than the reply window, with no reply: window closed [7.1]."""
    return replies.windows_expire(now=clock.now())
