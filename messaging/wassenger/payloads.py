"""Readers of the payloads Wassenger posts to the webhook: the vocabulary of its events.

Every field Relance reads from a webhook event is read here, so that a change in
Wassenger's shapes is one edit. webhooks/ingest.py describes and stores events with these
readers, webhooks/processing.py and webhooks/replies.py act on them; none of them reads a
raw field by hand. The client (client.py) shares `names_the_number` with the failure
reasons read here: the one rule for "Wassenger's text is about the recipient's number".

Both real formats arrive (wassenger-api.md): Format A, one event object, and Format B, an
array of up to 25 gateway events. Reading is lenient: a missing or oddly typed field reads
as "" (or None), and the first of several places a field may sit wins. In Format B's
`data.id` is Wassenger's 24-hex id; in Format A's it is the WhatsApp id.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

# Wassenger gave a queued message up without sending it (delivery-log enum of SPEC).
EXPIRED_EVENTS = frozenset({"message:out:expired", "message:out:removed"})
OUTBOUND_EVENTS = frozenset(
    {"message:out:ack", "message:out:new", "message:out:sent", "message:out:failed", *EXPIRED_EVENTS}
)
FAILED_EVENT = "message:out:failed"
INBOUND_EVENT = "message:in:new"
SESSION_EVENT = "number:session"
HANDLED_EVENTS = OUTBOUND_EVENTS | {INBOUND_EVENT, SESSION_EVENT}
# Timestamps outside these years are garbage, not times (epoch seconds from 2000 to 2100).
_EPOCH_RANGE = (946_684_800, 4_102_444_800)
WASSENGER_ID = re.compile(r"^[0-9a-f]{24}$")
# Wassenger's words for the recipient's number, in an error body or a failure reason.
_NUMBER_WORDS = re.compile(r"phone|number|wid\b|recipient|whatsapp account", re.IGNORECASE)
# "Phone number does not exist on WhatsApp", "number not found"…: with the number words,
# so that "invalid media" or "message not found" never marks a contact invalid.
_MISSING = re.compile(r"not exist|n't exist|not found|not registered|not on whatsapp|invalid", re.IGNORECASE)


# --- Values ------------------------------------------------------------------------------------


def text_of(value: object) -> str:
    """A string or integer field as text; anything else (objects, booleans, null) as ""."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return ""


def first_text(*values: object) -> str:
    return next((text for text in map(text_of, values) if text), "")


def dig(value: object, *keys: str) -> object:
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def moment_of(value: object) -> datetime | None:
    """An epoch (seconds or milliseconds) or ISO 8601 time as an aware datetime, else None."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        seconds = value / 1000 if value > _EPOCH_RANGE[1] else value
        if _EPOCH_RANGE[0] <= seconds <= _EPOCH_RANGE[1]:
            return datetime.fromtimestamp(seconds, UTC)
        return None
    if not isinstance(value, str) or not 10 <= len(value) <= 40:
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment if 2000 <= moment.year <= 2100 else None


def names_the_number(words: str) -> bool:
    """Wassenger's text names the recipient's phone/number (the client adds "and not our
    device"; a failure reason adds that the number is missing)."""
    return bool(_NUMBER_WORDS.search(words))


# --- One event -----------------------------------------------------------------------------------


def body_events(body: object) -> list:
    """The events of a parsed body: Format B's array items, or Format A's one object."""
    return body if isinstance(body, list) and body else [body]


def event_name(item: dict) -> str:
    return text_of(item.get("event"))


def event_data(item: dict) -> dict | None:
    data = item.get("data")
    return data if isinstance(data, dict) else None


def event_time(item: dict, *, inbound: bool) -> datetime | None:
    """A reply's own time is when the contact wrote; a receipt's is when the event was made."""
    data = event_data(item) or {}
    own = (data.get("timestamp"), data.get("date"))
    envelope = (item.get("created"), item.get("date"))
    for value in (*own, *envelope) if inbound else (*envelope, *own):
        if (moment := moment_of(value)) is not None:
            return moment
    return None


def event_summary(item: object) -> tuple[str, str, str]:
    """(event, id, ack) as far as they can be told from anything, for a rejected event."""
    as_dict = item if isinstance(item, dict) else {}
    data = event_data(as_dict) or {}
    return (
        event_name(as_dict),
        first_text(data.get("id"), as_dict.get("id")),
        first_text(as_dict.get("ack"), data.get("ack"), data.get("status")),
    )


# --- Messages (message:out:*, message:in:new) ---------------------------------------------------------


def message_id(item: dict) -> str:
    data = event_data(item) or {}
    return first_text(data.get("id"), item.get("entityId"), item.get("id"), data.get("reference"))


def message_ack(item: dict) -> str:
    data = event_data(item) or {}
    return first_text(item.get("ack"), data.get("ack"), data.get("deliveryStatus"), data.get("status"))


def message_reference(data: dict) -> str:
    """The `reference` Relance gave the message when it sent it ("" when absent)."""
    return text_of(data.get("reference"))


def message_ids(item: dict) -> set[str]:
    """Every id the event gives its message: Wassenger's, WhatsApp's, the envelope's."""
    data = event_data(item) or {}
    ids = {first_text(v) for v in (data.get("id"), data.get("waId"), item.get("entityId"), item.get("id"))}
    ids.discard("")
    return ids


def message_event_ids(data: dict) -> tuple[str, str]:
    """(Wassenger's 24-hex id, WhatsApp's id) the event gives, each "" when absent."""
    ids = [first_text(data.get("id")), first_text(data.get("waId"))]
    wassenger_id = next((i for i in ids if WASSENGER_ID.match(i)), "")
    whatsapp_id = next((i for i in ids if i and not WASSENGER_ID.match(i)), "")
    return wassenger_id, whatsapp_id


# How far an outbound message has got, by Wassenger's ack or deliveryStatus word (receipts
# and lookups alike); `readed` (sic) is in SPEC's deliveryStatus enum and means read.
ACK_RANK = {
    "pending": 1,
    "queued": 1,
    "processing": 1,
    "sent": 1,
    "delivered": 2,
    "read": 3,
    "readed": 3,
    "played": 3,
}


def status_time(data: dict, *, status: str) -> datetime | None:
    """When the message reached `status` ("sent", "delivered", "read"), where the event says."""
    return moment_of(dig(data, "events", status, "date"))


def failure_reason(data: dict) -> str:
    """Why Wassenger failed the message: its failure code and its `failureReason` text, as
    far as they are given ("number:notfound: Phone number not found"), else ""."""
    code = first_text(data.get("failureCode"), data.get("errorCode"), data.get("error"))
    text = first_text(data.get("failureReason"), data.get("reason"))
    return ": ".join(dict.fromkeys(part for part in (code, text) if part))


# Wassenger's own failure codes (SPEC, a campaign contact's `error`). Only `number:notfound`
# says the number is not on WhatsApp; the contact blocking the number, retries running out,
# a first message WhatsApp forbids, a chat that cannot be written to and a WABA error all
# fail the message and say nothing about the number. Compared without "_" and "-".
NOT_ON_WHATSAPP_CODES = frozenset({"number:notfound"})
MESSAGE_ONLY_CODES = frozenset(
    {"contact:blocked", "maxretries", "message:forbiddenfirstmessage", "chat:cannotsend", "waba:error"}
)
_CODE = re.compile(r"[a-z][a-z_-]*:[a-z][a-z_-]*|max_retries")


def failure_code_verdict(text: str) -> bool | None:
    """What Wassenger's failure codes in `text` say: True, the number is not on WhatsApp;
    False, the failure is the message's alone; None, no code Relance knows."""
    codes = {code.replace("_", "").replace("-", "") for code in _CODE.findall(text.lower())}
    if codes & NOT_ON_WHATSAPP_CODES:
        return True
    return False if codes & MESSAGE_ONLY_CODES else None


def failure_names_missing_number(reason: str) -> bool:
    """A failed message marks its contact not on WhatsApp: by Wassenger's own code, else by
    the words of the reason ("phone number does not exist"). A failure with no reason, or
    another code, fails the message only (the webhook's failures and lookups alike)."""
    verdict = failure_code_verdict(reason)
    if verdict is not None:
        return verdict
    return names_the_number(reason) and bool(_MISSING.search(reason))


# --- Inbound (message:in:new) -----------------------------------------------------------------------

# Chats that are not a conversation with one contact (WhatsApp's id suffixes and chat types).
GROUP, CHANNEL, STATUS, SYSTEM = "group", "channel", "status", "system"
_STATUS_CHAT = "status@broadcast"
# Message types WhatsApp uses for notices rather than something a person wrote [I].
_SYSTEM_TYPES = frozenset({"notification", "e2e_notification", "notification_template", "gp2", "call_log"})
# A WhatsApp id that names a phone number ("33612345678@c.us"; SPEC even writes "+…@c.us").
_NUMBER_WID = re.compile(r"^\+?(\d{6,17})(?:@c\.us|@s\.whatsapp\.net)?$")


def has_sender(data: dict) -> bool:
    """The event names someone: a sender, or a chat (a reply is judged by its chat)."""
    chat = (dig(data, "chat", "id"), dig(data, "chat", "contact", "phone"))
    return bool(first_text(data.get("fromNumber"), data.get("from"), *chat))


def inbound_kind(data: dict) -> str:
    """ "" for a one-to-one chat with a contact; else GROUP, CHANNEL, STATUS or SYSTEM.

    Any one sign is enough (meta flags, the chat's type, an id's suffix): a message that
    is not a contact's answer must never pass for one.
    """
    meta = data.get("meta") if isinstance(data.get("meta"), dict) else {}
    chat_type = text_of(dig(data, "chat", "type")).lower()
    ids = [first_text(v).lower() for v in (dig(data, "chat", "id"), data.get("from"), data.get("to"))]
    if meta.get("isGroup") is True or chat_type == GROUP or any(i.endswith("@g.us") for i in ids):
        return GROUP
    if chat_type == CHANNEL or any(i.endswith("@newsletter") for i in ids):
        return CHANNEL
    if chat_type == STATUS or _STATUS_CHAT in ids:
        return STATUS
    system = meta.get("isNotification") is True or meta.get("isBizNotification") is True
    return SYSTEM if system or text_of(data.get("type")).lower() in _SYSTEM_TYPES else ""


def inbound_contact_number(item: dict, *, own_numbers: frozenset[str] = frozenset()) -> str:
    """The other party of a one-to-one chat, as given ("+…", unchecked; "" if none).

    The chat names it (`chat.contact.phone`, else the number in `chat.id`); lacking a chat,
    the sender, else the recipient. Never a number of ours: in SPEC's own example
    `fromNumber` is the device's number (`device.phone`), while other deliveries put the
    contact there. A contact WhatsApp knows only by a `@lid` id has no number but
    `chat.contact.phone`. `own_numbers` adds the numbers the caller knows as its own.
    """
    data = event_data(item) or {}
    own = {_digits(n) for n in (*own_numbers, session_device_phone(item))} - {""}
    candidates = (
        dig(data, "chat", "contact", "phone"),
        _wid_number(dig(data, "chat", "id")),
        data.get("fromNumber"),
        _wid_number(data.get("from")),
        data.get("toNumber"),
        _wid_number(data.get("to")),
    )
    numbers = (text_of(c) for c in candidates)
    return next((n for n in numbers if n and not n.endswith("@lid") and _digits(n) not in own), "")


def inbound_lid(data: dict) -> str:
    """The contact's `@lid` id when that is all the payload gives of it, else ""."""
    ids = (dig(data, "chat", "id"), data.get("from"), dig(data, "chat", "lid"))
    return next((i for i in map(text_of, ids) if i.endswith("@lid")), "")


def _wid_number(value: object) -> str:
    match = _NUMBER_WID.match(text_of(value))
    return f"+{match.group(1)}" if match else ""


def _digits(number: str) -> str:
    return "".join(c for c in number if c.isdigit())


def reply_text(data: dict) -> str:
    """The text the contact wrote: the body, or a media message's caption."""
    return first_text(data.get("body"), dig(data, "media", "caption"))


_TEXT_TYPES = frozenset({"", "text", "chat"})


def inbound_media_kind(data: dict) -> str:
    """What a message is besides text ("image", "audio", "document", "location"…), "" for text."""
    kind = text_of(data.get("type")).lower()[:32]
    if kind in _TEXT_TYPES:
        return "media" if isinstance(data.get("media"), dict) else ""
    return kind


def outbound_recipient(data: dict) -> str:
    """The recipient's number of an outbound message's event, as given ("" if none)."""
    return first_text(data.get("phone"), data.get("toNumber"), dig(data, "chat", "contact", "phone"))


# --- Sessions (number:session) ----------------------------------------------------------------------


def session_device_id(item: dict) -> str:
    data = event_data(item) or {}
    device = item.get("device") if isinstance(item.get("device"), dict) else {}
    return first_text(device.get("id"), dig(data, "device", "id"), data.get("device"), data.get("id"))


def session_device_phone(item: dict) -> str:
    return text_of(dig(item, "device", "phone"))


def session_status(item: dict) -> str:
    data = event_data(item) or {}
    return first_text(
        dig(data, "session", "status"),
        data.get("status"),
        dig(data, "device", "session", "status"),
        dig(item, "device", "session", "status"),
        item.get("status"),
    ).lower()
