"""Wassenger's documented webhook payloads, as they really are: one table for every test.

The parser tests (tests/messaging/test_payloads.py, tests/webhooks/) read these examples,
and the sandbox tests check every payload the sandbox emits against them (`shape_problems`).
Sources (../shared/wassenger-api.md): SPEC is Wassenger's own Swagger spec
(`logg926/wassenger-metrics:specification1.json`), copied without tidying: in its
`message:in:new` example `from`/`fromNumber` are the **device's** number ("+4412345678",
equal to `device.phone`, `from` even keeps its "+") and only `chat` names the contact.
WILD is a real delivery quoted in a public repository: there `fromNumber` is the contact,
and the chat carries a `lid`. GROUP is ours [I]: no public source shows a group delivery;
it is SPEC's shape in a group chat, with the sender's own number in `fromNumber`, the
case that must never pass for a reply. Long sub-objects that nothing reads (chat stats,
owner, contact image) are kept: the sandbox must look like this, not like our reading.
"""

from __future__ import annotations

import copy
import json
import re

SPEC_DEVICE = {
    "id": "61b37a069cba0c15d6c89757",
    "phone": "+4412345678",
    "alias": "Demo",
    "plan": "io-enterprise",
    "version": 1,
}
SPEC_CONTACT_PHONE = "+1234567890"

_META = {
    "rtl": False,
    "containsEmoji": False,
    "isGif": False,
    "isStar": False,
    "isGroup": False,
    "isForwarded": False,
    "isEphemeral": False,
    "isNotification": False,
    "isLive": False,
    "isBroadcast": False,
    "isBizNotification": False,
    "isDoc": False,
    "isLinkPreview": False,
    "isPSA": False,
    "isRevoked": False,
    "isUnreadType": False,
    "isFailed": False,
    "notifyName": "Support Team",
}


def _chat(name: str, *, chat_id: str = "1234567890@c.us", kind: str = "chat") -> dict:
    return {
        "id": chat_id,
        "name": name,
        "date": "2022-12-15T20:00:00.000Z",
        "type": kind,
        "status": "active",
        "waStatus": "active",
        "statusUpdatedAt": "2022-08-23T08:40:45.722Z",
        "deletedAt": "2022-08-24T13:28:25.033Z",
        "firstMessageAt": "2022-08-19T10:59:08.000Z",
        "lastMessageAt": "2022-12-15T20:00:00.000Z",
        "lastOutboundMessageAt": "2022-12-15T20:00:00.000Z",
        "lastInboundMessageAt": "2022-12-15T22:00:00.000Z",
        "lastReactionAt": "2022-12-15T03:00:13.662Z",
        "lastReactionEmoji": "👍",
        "stats": {"notes": 0, "localMessages": 53, "inboundMessages": 0, "outboundMessages": 0},
        "labels": ["sales", "new-customer"],
        "owner": {
            "agent": "5f71e36254800f533ab79148",
            "assigner": "5f71e36254800f533ab79148",
            "assignedAt": "2022-11-15T23:53:00.439Z",
        },
        "contact": {
            "wid": "1234567890@c.us",
            "name": "John",
            "shortName": "Wick",
            "displayName": "John Wick",
            "formattedName": "John Wick",
            "formattedShortName": "John Wick",
            "syncedAt": "2022-12-16T21:47:03.206Z",
            "phone": SPEC_CONTACT_PHONE,
            "image": {"url": "https://pps.whatsapp.net/v/t61.1111-1/1234567_n.jpg"},
        },
    }


# SPEC, "New inbound message event": fromNumber is the device (section 0 of the API page).
SPEC_IN_NEW = {
    "id": "3EB03EBAF8863B70BA00AF",
    "object": "message",
    "event": "message:in:new",
    "created": 1671225190,
    "device": SPEC_DEVICE,
    "data": {
        "id": "3EB03EBAF8863B70BA00AF",
        "type": "text",
        "flow": "inbound",
        "status": "active",
        "ack": "delivered",
        "from": "+4412345678@c.us",
        "fromNumber": "+4412345678",
        "to": "1234567890@c.us",
        "toNumber": "+1234567890",
        "date": "2022-12-15T20:00:00.000Z",
        "timestamp": 1671225190,
        "body": "This is a sample inbound text message webhook event",
        "chat": _chat("John Wick"),
        "events": {"sent": {"date": "2022-12-15T20:00:00.000Z"}},
        "meta": {**_META, "source": "android"},
    },
}

# WILD: a real delivery (a dental practice's bot, quoted in its repository), numbers changed.
# fromNumber is the contact; the chat has a @lid id besides its @c.us one.
WILD_DEVICE = {
    "id": "68fd1067b488de07029fccc2",
    "phone": "+5215645570796",
    "alias": "Demo",
    "plan": "io-professional",
}
WILD_CONTACT_PHONE = "+5215617354008"
WILD_IN_NEW = {
    "id": "ACB19255F805BFD6139C144316DE574F",
    "object": "message",
    "event": "message:in:new",
    "created": 1765642500,
    "device": WILD_DEVICE,
    "data": {
        "id": "ACB19255F805BFD6139C144316DE574F",
        "type": "text",
        "flow": "inbound",
        "status": "active",
        "ack": "delivered",
        "from": "5215617354008@c.us",
        "fromNumber": WILD_CONTACT_PHONE,
        "to": "5215645570796@c.us",
        "toNumber": "+5215645570796",
        "date": "2025-12-13T16:15:00.000Z",
        "timestamp": 1765642500,
        "body": "Gracias, nos vemos mañana",
        "chat": {
            **_chat("Dra Reynita", chat_id="5215617354008@c.us"),
            "lid": "183807571451999@lid",
            "contact": {**_chat("")["contact"], "wid": "5215617354008@c.us", "phone": WILD_CONTACT_PHONE},
        },
        "events": {"sent": {"date": "2025-12-13T16:15:00.000Z"}},
        "meta": dict(_META),
    },
}

# [I] A contact WhatsApp only names by its @lid id: the chat's contact still has the phone.
LID_IN_NEW = copy.deepcopy(WILD_IN_NEW)
LID_IN_NEW["data"].update({"from": "183807571451999@lid", "fromNumber": ""})
LID_IN_NEW["data"]["chat"]["id"] = "183807571451999@lid"

# [I] A group message: SPEC's shape in a group chat, the participant's number in fromNumber.
GROUP_ID = "120363025246125486@g.us"
GROUP_IN_NEW = copy.deepcopy(WILD_IN_NEW)
GROUP_IN_NEW["data"].update({"to": GROUP_ID, "toNumber": "", "body": "Oui"})
GROUP_IN_NEW["data"]["chat"] = {**_chat("Voisins", chat_id=GROUP_ID, kind="group")}
del GROUP_IN_NEW["data"]["chat"]["contact"]
GROUP_IN_NEW["data"]["meta"]["isGroup"] = True

# SPEC, "New outbound message event" (`message:out:new`): no reference anywhere.
SPEC_OUT_NEW = {
    "id": "3EB004B1D010CA0EF6A201",
    "object": "message",
    "event": "message:out:new",
    "created": 1671220018,
    "device": {**SPEC_DEVICE, "phone": "+44123456789", "alias": "Demo-2"},
    "data": {
        "id": "3EB004B1D010CA0EF6A201",
        "type": "text",
        "flow": "outbound",
        "status": "active",
        "ack": "delivered",
        "agent": "5f71e36254800f533ab79148",
        "from": "44123456789@c.us",
        "fromNumber": "+44123456789",
        "to": "1234567890@c.us",
        "toNumber": "+1234567890",
        "date": "2022-12-15T22:00:00.000Z",
        "timestamp": 1671220018,
        "body": "Hello! This is a sample outbound text message webhook event",
        "chat": _chat("John"),
        "events": {"sent": {"date": "2022-12-15T22:06:33.108Z"}},
        "meta": dict(_META),
    },
}

# SPEC, "Message is received and read by the recipient" (`message:out:ack`): no reference.
SPEC_OUT_ACK = {
    "id": "3EB004B1D010CA0EF6A205",
    "object": "message",
    "event": "message:out:ack",
    "created": 1671220018,
    "ack": "read",
    "device": {**SPEC_DEVICE, "phone": "+44123456789"},
    "data": {
        **{k: v for k, v in SPEC_OUT_NEW["data"].items() if k != "agent"},
        "id": "3EB004B1D010CA0EF6A205",
        "ack": "read",
        "date": "2022-12-15T20:00:00.000Z",
        "body": "This is a sample message read ack webhook event",
        "events": {
            "sent": {"date": "2022-12-16T21:26:43.215Z"},
            "delivered": {"date": "2022-12-16T21:26:43.216Z"},
        },
    },
}

_GATEWAY_DEVICE = {
    "id": "3bf5d1ff2ff2bd001696ac42",
    "phone": "+1234567890",
    "alias": "My WA Delivery Device",
    "status": "verified",
    "session": {"status": "online", "error": False, "lastSyncAt": "2022-12-02T10:11:16.008Z"},
}

# SPEC, "Message delivery failed event": Format B, an array; no failureReason, no reference.
SPEC_OUT_FAILED = [
    {
        "event": "message:out:failed",
        "date": "2018-12-08T15:01:48.518Z",
        "entity": "message",
        "entityId": "5bf612faa893b00016c0f13d",
        "entityUrl": "https://api.wassenger.com/v1/messages/5bf612faa893b00016c0f13d",
        "user": "5bd75ab235623e00162a73dc",
        "data": {
            "id": "5bf612faa893b00016c0f13d",
            "phone": "+1234567890",
            "status": "failed",
            "deliveryStatus": "failed",
            "createdAt": "2022-11-22T02:22:50.955Z",
            "sentAt": "2022-11-22T02:29:29.254Z",
            "failedAt": None,
            "processedAt": "2022-11-22T02:28:54.818Z",
            "webhookStatus": "pending",
            "message": "This is an automated message sent from the API",
            "priority": "normal",
            "schedule": {"enabled": False},
            "retry": {"count": 1, "lastRetryAt": "2022-11-22T02:25:58.414Z"},
            "device": _GATEWAY_DEVICE,
        },
    }
]

# SPEC, "Message sent event (Gateway plans only)": the same shape as the failure.
SPEC_OUT_SENT = copy.deepcopy(SPEC_OUT_FAILED)
SPEC_OUT_SENT[0]["event"] = "message:out:sent"
SPEC_OUT_SENT[0]["data"].update(status="processed", deliveryStatus="delivered")

# Every documented example, by the name tests use.
SHAPES = {
    "message:in:new (SPEC, fromNumber = device)": SPEC_IN_NEW,
    "message:in:new (WILD, fromNumber = contact)": WILD_IN_NEW,
    "message:in:new (contact known by @lid)": LID_IN_NEW,
    "message:in:new (group)": GROUP_IN_NEW,
    "message:out:new": SPEC_OUT_NEW,
    "message:out:ack": SPEC_OUT_ACK,
    "message:out:failed": SPEC_OUT_FAILED,
    "message:out:sent": SPEC_OUT_SENT,
}
# The example each emitted event is checked against.
REFERENCE_SHAPE = {
    "message:in:new": SPEC_IN_NEW,
    "message:out:new": SPEC_OUT_NEW,
    "message:out:ack": SPEC_OUT_ACK,
    "message:out:failed": SPEC_OUT_FAILED[0],
    "message:out:sent": SPEC_OUT_SENT[0],
}
# Keys a payload may add to the documented ones (wassenger-api.md marks them [I]):
# Format B's failureReason; the message model's fields on the message object; a chat's lid;
# a read ack's date.
ALLOWED_EXTRA = {
    *("failureReason", "failedAt", "waId", "wid", "deliverAt", "retentionPolicy", "media", "template", "lid"),
    "read",  # data.events.read of a read ack (wassenger-api.md: "data.events.delivered / .read")
}
# Keys the documented example has that a real payload may lack (never required).
OPTIONAL = {"agent", "source", "version", "owner", "schedule", "lastRetryAt", "contact", "image"}


def shape_problems(payload: object, example: object, path: str = "") -> list[str]:
    """Where `payload` departs from the documented `example`: a missing key, a key the
    documentation never shows, or another JSON type (null matches anything)."""
    if isinstance(example, dict):
        if not isinstance(payload, dict):
            return [f"{path or '.'}: {type(payload).__name__} instead of an object"]
        problems = [f"{path}.{k}: missing" for k in example if k not in payload and k not in OPTIONAL]
        problems += [
            f"{path}.{k}: not in the documented shape"
            for k in payload
            if k not in example and k not in ALLOWED_EXTRA
        ]
        for key in example.keys() & payload.keys():
            problems += shape_problems(payload[key], example[key], f"{path}.{key}")
        return problems
    if isinstance(example, list):
        if not isinstance(payload, list):
            return [f"{path or '.'}: {type(payload).__name__} instead of an array"]
        return [p for item in payload if example for p in shape_problems(item, example[0], f"{path}[]")]
    if example is None or payload is None:
        return []
    kinds = (bool, int | float, str)
    same = any(isinstance(example, k) and isinstance(payload, k) for k in kinds)
    if isinstance(example, bool) != isinstance(payload, bool) or not same:
        return [f"{path}: {type(payload).__name__} instead of {type(example).__name__}"]
    return []


def event_problems(payload: object) -> list[str]:
    """`shape_problems` against the documented example of the payload's own event."""
    first = payload[0] if isinstance(payload, list) and payload else payload
    name = first.get("event", "") if isinstance(first, dict) else ""
    example = REFERENCE_SHAPE.get(name)
    if example is None:
        return [f"no documented shape for event {name!r}"]
    if name in ("message:out:failed", "message:out:sent"):
        if not isinstance(payload, list):
            return [f"{name} is Format B: an array"]
        return [p for item in payload for p in shape_problems(item, example)]
    return shape_problems(payload, example)


def renumbered(example: object, numbers: dict[str, str], *, at=None) -> object:
    """A copy of `example` with its phone numbers swapped ({"+1234567890": "+336…"}), in
    every field and WhatsApp id that holds them, and, given `at`, its times moved there:
    the same shape (who is in `fromNumber` included), with numbers Relance can store."""
    text = json.dumps(example, ensure_ascii=False)
    for old, new in sorted(numbers.items(), key=lambda pair: -len(pair[0])):
        text = re.sub(rf"(?<!\d){re.escape(old.lstrip('+'))}(?!\d)", new.lstrip("+"), text)
    payload = json.loads(text)
    if at is not None:
        for item in payload if isinstance(payload, list) else [payload]:
            _retime(item, at)
    return payload


def _retime(item: dict, at) -> None:
    iso = at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if "created" in item:
        item["created"] = int(at.timestamp())
    if "date" in item:
        item["date"] = iso
    data = item.get("data", {})
    if "timestamp" in data:
        data["timestamp"] = int(at.timestamp())
    data["date"] = iso
    for event in data.get("events", {}).values():
        event["date"] = iso
