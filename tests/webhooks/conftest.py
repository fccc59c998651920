"""Fixtures for the webhook tests: events in Wassenger's real formats, and a way to post them.

Payloads follow wassenger-api.md: Format A (one object: message:out:ack, message:in:new,
number:session) and Format B (an array: message:out:failed). Tasks run inline
(django_q's Conf.SYNC), except the sender wake-ups, which are only recorded.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import quote

import pytest
from django_q.conf import Conf

from campaigns.models import CampaignStatus
from config import clock
from messaging.models import Message, MessageStatus
from tests.factories import make_campaign, make_contact, make_message
from tests.messaging.conftest import SANDBOX_TOKEN, SandboxProcess, start_sandbox

SECRET = "whs-test-" + "k" * 40
URL = "/webhooks/wassenger/"
DEVICE = {"id": "61b37a069cba0c15d6c89757", "phone": "+4412345678", "alias": "Demo", "plan": "io-enterprise"}


def sandbox_calling_live_server(live_server, settings, *flags: str) -> SandboxProcess:
    """Start the sandbox with its webhooks going to this test's live server, and point
    Relance's client at it (the caller stops it)."""
    settings.WASSENGER_WEBHOOK_SECRET = SECRET
    server = start_sandbox("--webhook-url", f"{live_server.url}{URL}?secret={quote(SECRET)}", *flags)
    settings.WASSENGER_API_URL, settings.WASSENGER_API_TOKEN = f"{server.url}/v1", SANDBOX_TOKEN
    return server


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def wa_id() -> str:
    return "3EB0" + secrets.token_hex(8).upper()


def hex_id() -> str:
    return secrets.token_hex(12)


# --- Payloads in the real formats -----------------------------------------------------------


def ack_event(message: Message, ack: str, *, at: datetime | None = None, reference: bool = True) -> dict:
    """Format A `message:out:ack` (top-level ack, data.id = WhatsApp id, our reference)."""
    at = at or clock.now()
    events = {"sent": {"date": iso(message.sent_at or at)}, "delivered": {"date": iso(at)}}
    if ack in ("read", "played"):
        events["read"] = {"date": iso(at)}
    data = _chat(message.whatsapp_id or wa_id(), "outbound", message.contact.phone, message.content, at)
    data.update(ack=ack, events=events)
    if reference:
        data["reference"] = str(message.reference)
    return {**_envelope(data["id"], "message:out:ack", at), "ack": ack, "data": data}


def reply_event(phone: str, body: str, *, at: datetime | None = None, inbound_id: str = "") -> dict:
    """Format A `message:in:new`: the contact writes to our number."""
    at = at or clock.now()
    data = _chat(inbound_id or wa_id(), "inbound", phone, body, at)
    data.update(ack="delivered", events={})
    return {**_envelope(data["id"], "message:in:new", at), "data": data}


def failed_event(message: Message, reason: str, *, reference: bool = True) -> list:
    """Format B `message:out:failed`: an array; data is the message keyed by its 24-hex id."""
    data = {
        "id": message.wassenger_id or hex_id(),
        "waId": message.whatsapp_id,
        "phone": message.contact.phone,
        "status": "failed",
        "deliveryStatus": "failed",
        "failureReason": reason,
        "retry": {"count": 1},
        "device": {"id": DEVICE["id"], "session": {"status": "online"}},
    }
    if reference:
        data["reference"] = str(message.reference)
    item = {"event": "message:out:failed", "date": iso(clock.now()), "entity": "message"}
    item.update(
        entityId=data["id"], entityUrl=f"https://api.wassenger.com/v1/messages/{data['id']}", data=data
    )
    return [item]


def session_event(status: str, *, at: datetime | None = None, device_id: str = DEVICE["id"]) -> dict:
    """`number:session` (its exact shape is undocumented: Format A envelope, status in data)."""
    at = at or clock.now()
    device = {**DEVICE, "id": device_id, "session": {"status": status}}
    envelope = {**_envelope(device_id, "number:session", at), "object": "device", "device": device}
    return {**envelope, "data": {"id": device_id, "status": status, "session": {"status": status}}}


def _envelope(message_id: str, event: str, at: datetime) -> dict:
    return {
        "id": message_id,
        "object": "message",
        "event": event,
        "created": int(at.timestamp()),
        "device": DEVICE,
    }


def _chat(message_id: str, flow: str, contact: str, body: str, at: datetime) -> dict:
    ours = flow == "outbound"
    device_wid, contact_wid = f"{DEVICE['phone'][1:]}@c.us", f"{contact[1:]}@c.us"
    return {
        "id": message_id,
        "type": "text",
        "flow": flow,
        "from": device_wid if ours else contact_wid,
        "fromNumber": DEVICE["phone"] if ours else contact,
        "to": contact_wid if ours else device_wid,
        "toNumber": contact if ours else DEVICE["phone"],
        "date": iso(at),
        "timestamp": int(at.timestamp()),
        "body": body,
        "chat": {"id": contact_wid, "type": "chat", "status": "active", "contact": {"phone": contact}},
        "meta": {"isGroup": False},
    }


# --- Rows ---------------------------------------------------------------------------------------


def sent_message_1(*, contact=None, campaign=None, sent_at: datetime | None = None, **fields) -> Message:
    """A Message 1 Wassenger accepted, in a sending campaign."""
    if campaign is None:
        campaign = make_campaign(message_2_text="Merci {{ first_name }} !")
        campaign.status = CampaignStatus.SENDING
        campaign.save(update_fields=["status"])
    fields.setdefault("status", MessageStatus.SENT)
    fields.setdefault("wassenger_id", hex_id())
    fields.setdefault("whatsapp_id", wa_id())
    return make_message(
        campaign=campaign, contact=contact or make_contact(), sent_at=sent_at or clock.now(), **fields
    )


def message_2_of(message: Message) -> Message | None:
    return Message.objects.filter(
        campaign=message.campaign, contact=message.contact, kind="message_2"
    ).first()


# --- Posting -------------------------------------------------------------------------------------


@dataclass
class Wakeups:
    """Sender wake-ups (messaging.dispatch.senders_wake), recorded instead of sent."""

    devices: list[int] = field(default_factory=list)

    def __call__(self, device_id: int) -> None:
        self.devices.append(device_id)


@pytest.fixture
def wakeups(monkeypatch) -> Wakeups:
    recorder = Wakeups()
    monkeypatch.setattr("messaging.dispatch.senders_wake", recorder)
    return recorder


@pytest.fixture
def inline_tasks(monkeypatch, wakeups, settings) -> Wakeups:
    """Webhook processing runs inline on commit; sender wake-ups are recorded."""
    monkeypatch.setattr(Conf, "SYNC", True)
    settings.WASSENGER_WEBHOOK_SECRET = SECRET
    return wakeups


@pytest.fixture
def post(client, django_capture_on_commit_callbacks, inline_tasks):
    """POST a payload (or raw bytes) to the endpoint and run what it enqueued on commit."""

    def send(
        payload=None, *, raw: bytes | None = None, secret: str | None = SECRET, path: str = URL, **headers
    ):
        query = "" if secret is None else f"?secret={secret}"
        body = raw if raw is not None else json.dumps(payload)
        with django_capture_on_commit_callbacks(execute=True):
            return client.post(path + query, data=body, content_type="application/json", headers=headers)

    return send


def later(moment: datetime, **delta) -> datetime:
    return moment + timedelta(**delta)
