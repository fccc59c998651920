"""Small factories: each makes one valid row, with overrides."""

from collections.abc import Iterable
from datetime import UTC, datetime
from itertools import count

from campaigns.models import Campaign, Category, Contact
from messaging.devices import device_ensure_default
from messaging.models import Device, Message, MessageKind

_numbers = count(1)


def make_phone() -> str:
    # French mobile numbers +33 6 xx xx xx xx, all valid for phonenumbers.
    return f"+336{next(_numbers) + 10_000_000:08d}"


def make_contact(**fields) -> Contact:
    categories = fields.pop("categories", [])
    fields.setdefault("phone", make_phone())
    fields.setdefault("first_name", "Camille")
    contact = Contact.objects.create(**fields)
    contact.categories.set(categories)
    return contact


def make_category(name: str | None = None) -> Category:
    return Category.objects.create(name=name or f"Category {next(_numbers)}")


def make_device(**fields) -> Device:
    fields.setdefault("label", f"Device {next(_numbers)}")
    return Device.objects.create(**fields)


def make_campaign(**fields) -> Campaign:
    """A draft on `devices` (or on one `device`; the default device if neither is given)."""
    categories = fields.pop("categories", [])
    device, devices = fields.pop("device", None), fields.pop("devices", None)
    devices = devices or [device or device_ensure_default()]
    fields.setdefault("name", f"Campaign {next(_numbers)}")
    fields.setdefault("message_1_text", "Bonjour {{ first_name }}")
    fields.setdefault("message_2_text", "Merci pour votre réponse !")
    campaign = Campaign.objects.create(**fields)
    campaign.categories.set(categories)
    campaign.devices_set(devices)
    return campaign


def first_device_id(campaign: Campaign) -> int:
    return campaign.device_ids()[0]


def make_message(**fields) -> Message:
    """A message of `campaign`, or of a new campaign on `device` (a message's device is
    always its campaign's: the database checks it at commit)."""
    if "campaign" not in fields:
        fields["campaign"] = make_campaign(**({"device": fields["device"]} if "device" in fields else {}))
    fields.setdefault("contact", make_contact())
    if "device" not in fields:
        fields.setdefault("device_id", first_device_id(fields["campaign"]))
    fields.setdefault("kind", MessageKind.MESSAGE_1)
    fields.setdefault("content", "Bonjour")
    return Message.objects.create(**fields)


def make_sending_campaign(*, device: Device | None = None, name: str | None = None, devices=None) -> Campaign:
    campaign = make_campaign(devices=devices or [device], name=name or f"Sending {next(_numbers)}")
    Campaign.objects.filter(pk=campaign.pk).update(status="sending")
    campaign.refresh_from_db()
    return campaign


def queue_message_1(
    *, campaign: Campaign, contacts: Iterable[Contact], content: str = "Bonjour", device_id: int | None = None
) -> None:
    """Pending Message 1 rows, due long ago, as a launch leaves them (without its checks), on
    `device_id` or the campaign's first device."""
    device_id = device_id or first_device_id(campaign)
    Message.objects.bulk_create(
        Message(
            campaign=campaign,
            contact=contact,
            device_id=device_id,
            kind=MessageKind.MESSAGE_1,
            content=content,
            next_attempt_at=datetime(2000, 1, 1, tzinfo=UTC),
        )
        for contact in contacts
    )


def make_workers_alive() -> None:
    """Every cluster and a sender loop seen just now, as a healthy installation shows them."""
    from monitoring.health import heartbeat_write

    heartbeat_write()
    make_other_workers_beat()


def make_other_workers_beat() -> None:
    """The number checks' cluster and the sender loop seen just now (not the default cluster)."""
    from config import clock
    from messaging.models import SenderLoop
    from monitoring.health import VERIFY, heartbeat_beat

    heartbeat_beat(VERIFY)
    SenderLoop.objects.update_or_create(
        owner="tests-sender-loop", defaults={"started_at": clock.now(), "seen_at": clock.now()}
    )


def make_inbound(*, contact=None, text: str = "Oui", outcome: str = "message_2", message_1=None, **fields):
    """An inbound message (and the webhook event it came in), as processing writes it."""
    from config import clock
    from webhooks.models import InboundMessage, WebhookEvent

    whatsapp_id = f"3EB0{next(_numbers):016X}"
    event = WebhookEvent.objects.create(
        event="message:in:new", message_id=whatsapp_id, dedup_key=f"message:in:new|{whatsapp_id}", payload={}
    )
    contact = contact or (message_1.contact if message_1 else None)
    fields.setdefault("written_at", clock.now())
    fields.setdefault("phone", contact.phone if contact else "+33699999999")
    if message_1 is not None:
        fields.setdefault("campaign", message_1.campaign)
        fields.setdefault("device_id", message_1.device_id)
    return InboundMessage.objects.create(
        event=event,
        contact=contact,
        text=text,
        outcome=outcome,
        message_1=message_1,
        whatsapp_id=whatsapp_id,
        **fields,
    )
