"""Inbound messages as rows: what someone wrote to one of our numbers, and what Relance did.

processing.py writes one row per `message:in:new` event (`inbound_record`), in the
transaction that acts on the event and while its row is locked: a redelivery is the same
event (ingest's dedup key), a reprocessing updates the row. Events processed before rows
existed get theirs from migration 0005 (`inbound_backfill`, which reads what processing
wrote in each event's reason).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from messaging.wassenger import payloads
from webhooks.models import InboundMessage, InboundOutcome, WebhookEvent


def inbound_fields(item: dict, *, event: WebhookEvent) -> dict:
    """The row's fields that the event alone says: text, media, ids, when it was written."""
    data = payloads.event_data(item) or {}
    return {
        "text": payloads.reply_text(data),
        "media_kind": payloads.inbound_media_kind(data),
        "whatsapp_id": event.message_id,
        "written_at": inbound_written_at(event),
    }


def inbound_written_at(event: WebhookEvent) -> datetime:
    """When the contact wrote: the message's own time, so that a reply delivered or
    processed late is judged by when it was written; never later than its arrival."""
    if event.occurred_at is None:
        return event.received_at
    return min(event.occurred_at, event.received_at)


def inbound_record(*, event: WebhookEvent, item: dict, phone: str, contact, device_id, verdict) -> None:
    """Write (or, on reprocessing, update) the event's row with `verdict` (replies.Verdict)."""
    message_1 = verdict.message_1
    fields = {
        **inbound_fields(item, event=event),
        "contact": contact,
        "phone": (contact.phone if contact else phone)[:64],
        "device_id": device_id or (message_1.device_id if message_1 else None),
        "campaign_id": message_1.campaign_id if message_1 else None,
        "message_1": message_1,
        "outcome": verdict.outcome,
    }
    InboundMessage.objects.update_or_create(event=event, defaults=fields)


# --- The backfill (migration 0005) ------------------------------------------------------------

# What processing wrote in the reason of an inbound event (webhooks/replies.py), first match wins;
# the group, if any, is the id of the Message 1 it was judged against.
_REASONS = (
    (re.compile(r"(group|channel|status|system) message: stored"), InboundOutcome.GROUP),
    (re.compile(r"reply not placed:"), InboundOutcome.UNKNOWN_SENDER),
    (re.compile(r"stop word:"), InboundOutcome.OPT_OUT),
    (re.compile(r"contact \d+ opted out: no Message 2"), InboundOutcome.OPTED_OUT),
    (re.compile(r"reply to message (\d+)"), InboundOutcome.MESSAGE_2),
    (re.compile(r"message (\d+) was already answered"), InboundOutcome.ALREADY_ANSWERED),
    (re.compile(r"reply after the .* window of message (\d+)"), InboundOutcome.LATE),
    (re.compile(r"campaign \d+ is \w+: no Message 2"), InboundOutcome.CAMPAIGN_OVER),
)


def outcome_from_reason(reason: str) -> tuple[str, int | None]:
    """(outcome, id of the Message 1 named) that an event's reason records."""
    for pattern, outcome in _REASONS:
        if match := pattern.match(reason):
            named = match.group(match.lastindex) if match.lastindex else None
            return outcome, int(named) if named and named.isdigit() else None
    return InboundOutcome.NOT_A_REPLY, None


def inbound_backfill(apps, schema_editor=None, *, batch: int = 1000) -> int:
    """A row for each processed inbound event that has none; returns how many were written.

    Safe to run twice: an event's row is unique, and events with one are skipped.
    """
    Event, Inbound = apps.get_model("webhooks", "WebhookEvent"), apps.get_model("webhooks", "InboundMessage")
    Contact, Message = apps.get_model("campaigns", "Contact"), apps.get_model("messaging", "Message")
    Device = apps.get_model("messaging", "Device")
    devices = {d.phone: d.pk for d in Device.objects.exclude(phone="")}
    waiting = Event.objects.filter(event=payloads.INBOUND_EVENT, status="processed", inbound__isnull=True)
    written = 0
    for event in waiting.order_by("pk").iterator(chunk_size=batch):
        row = _backfilled_row(event, Contact, Message, devices)
        written += len(Inbound.objects.bulk_create([Inbound(**row)], ignore_conflicts=True))
    return written


def _backfilled_row(event, Contact, Message, devices: dict) -> dict:
    item = event.payload if isinstance(event.payload, dict) else {}
    outcome, message_1_id = outcome_from_reason(event.reason)
    phone = _phone(item, frozenset(devices))
    placed = phone and outcome != InboundOutcome.GROUP
    contact = Contact.objects.filter(phone=phone).first() if placed else None
    message_1 = Message.objects.filter(pk=message_1_id).first() if message_1_id else None
    if message_1 is None and contact is not None and outcome != InboundOutcome.UNKNOWN_SENDER:
        sent = Message.objects.filter(contact=contact, kind="message_1", sent_at__isnull=False)
        message_1 = sent.order_by("-sent_at").first()
    device_phone = payloads.session_device_phone(item)
    return {
        **inbound_fields(item, event=event),
        "event_id": event.pk,
        "contact": contact,
        "phone": (contact.phone if contact else phone)[:64],
        "device_id": devices.get(device_phone) or (message_1.device_id if message_1 else None),
        "campaign_id": message_1.campaign_id if message_1 else None,
        "message_1": message_1,
        "outcome": outcome,
    }


def _phone(item: dict, own: frozenset[str]) -> str:
    from webhooks.replies import phone_or_raw  # replies imports models this module's callers load

    return phone_or_raw(payloads.inbound_contact_number(item, own_numbers=own))


# --- Reading them: the replies page and API, a contact's conversation ------------------------


def inbound_search(*, campaign=None, device=None, outcome: str = "", text: str = ""):
    """Inbound messages, newest first, filtered as the replies page and API offer."""
    rows = InboundMessage.objects.select_related("contact", "campaign", "device")
    if campaign is not None:
        rows = rows.filter(campaign=campaign)
    if device is not None:
        rows = rows.filter(device=device)
    if outcome in InboundOutcome.values:
        rows = rows.filter(outcome=outcome)
    if text:
        rows = rows.filter(text__icontains=text)
    return rows.order_by("-written_at", "-id")


@dataclass(frozen=True)
class Turn:
    """One message of a conversation: ours (a Message 1 or 2) or theirs (an inbound one)."""

    at: datetime
    message: object | None = None  # messaging.Message
    inbound: InboundMessage | None = None

    @property
    def ours(self) -> bool:
        return self.message is not None


def contact_conversation(contact) -> list[Turn]:
    """The contact's whole conversation in order: every message we created for them (sent or
    not yet) and everything they wrote. A test send rendered for them went to someone else."""
    from messaging.models import Message, MessageKind

    ours = Message.objects.filter(contact=contact).exclude(kind=MessageKind.TEST).select_related("campaign")
    theirs = InboundMessage.objects.filter(contact=contact).select_related("campaign")
    turns = [Turn(m.sent_at or m.created_at, message=m) for m in ours]
    turns += [Turn(i.written_at, inbound=i) for i in theirs]
    return sorted(turns, key=lambda turn: (turn.at, not turn.ours))
