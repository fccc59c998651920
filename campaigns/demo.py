"""Demo data for a newcomer's first ten minutes: `python manage.py demo`.

A sandbox device with demo pacing (clearly labelled: real devices keep 25 s / 25 / 300 s),
three overlapping categories of about 300 contacts (a few opted out, a few known to be
invalid, a few that the sandbox will reject at send time) and a ready, personalised
campaign. Running it again changes nothing: every row is found by its natural key, and the
contacts go through the one upsert of the import and the API (campaigns/contacts.py).
"""

from collections import defaultdict
from dataclasses import dataclass
from datetime import date

from django.db import transaction

from campaigns.contacts import ContactRow, contact_mark_not_on_whatsapp, contact_opt_out, contacts_upsert
from campaigns.models import Campaign, CampaignStatus, Category, Contact, WhatsAppStatus
from messaging.models import Device
from messaging.wassenger.sandbox.state import SANDBOX_DEVICE_ID

DEVICE_LABEL = "Demo sandbox (demo pacing: 2 s gap, 20 s pause)"
CAMPAIGN_NAME = "Demo — spring offer"
CATEGORY_NAMES = ("Demo — customers", "Demo — prospects", "Demo — trade fair 2026")
CONTACTS = 300
FIRST_NAMES = ("Léa", "Hugo", "Chloé", "Lucas", "Inès", "Louis", "Jade", "Adam", "Manon", "")
CITIES = ("Paris", "Lyon", "Marseille", "Lille", "Nantes", "Dakar", "Casablanca")
MESSAGE_1 = (
    "Bonjour {{ first_name }} ! Notre offre de printemps arrive à {{ city }}. "
    "Répondez à ce message pour en savoir plus (STOP pour ne plus recevoir nos messages)."
)
MESSAGE_2 = "Merci {{ first_name }} ! Un conseiller vous rappelle aujourd'hui."
OPT_OUT_CONFIRMATION = "C'est noté : vous ne recevrez plus de messages de notre part."


@dataclass(frozen=True)
class DemoSummary:
    device: Device
    campaign: Campaign
    contacts: int
    opted_out: int
    invalid: int


@transaction.atomic
def demo_create() -> DemoSummary:
    device = _device()
    categories = [Category.objects.get_or_create(name=name)[0] for name in CATEGORY_NAMES]
    _contacts_upsert(categories)
    campaign = _campaign(device, categories)
    contacts = Contact.objects.filter(phone__in=[_phone(n) for n in range(1, CONTACTS + 1)])
    return DemoSummary(
        device=device,
        campaign=campaign,
        contacts=contacts.count(),
        opted_out=contacts.filter(opted_out_at__isnull=False).count(),
        invalid=contacts.filter(whatsapp_status=WhatsAppStatus.INVALID).count(),
    )


def _device() -> Device:
    pacing = {"gap_seconds": 2, "batch_size": 25, "batch_pause_seconds": 20, "daily_limit": 1000}
    # A demo runs at any hour on the sandbox's number, which needs no warm-up: it is no real number.
    pacing |= {"send_window": "always", "number_since": date(2020, 1, 1)}
    device, _ = Device.objects.get_or_create(label=DEVICE_LABEL, defaults=pacing)
    if not device.wassenger_id and not Device.objects.filter(wassenger_id=SANDBOX_DEVICE_ID).exists():
        # The sandbox's own number: its session events (POST /sandbox/device) then reach this
        # device, as a real number's reach the device that holds its id.
        device.wassenger_id = SANDBOX_DEVICE_ID
        device.save(update_fields=["wassenger_id"])
    return device


def _phone(n: int) -> str:
    # Numbers ending in 0000 do not exist in the sandbox: five of them, the last two not yet
    # known as invalid, so the demo also shows a failure coming back by webhook.
    return f"+3361{n:03d}0000" if n % 60 == 0 else f"+33612{n:06d}"


def _row(n: int) -> ContactRow:
    first_name, city = FIRST_NAMES[n % len(FIRST_NAMES)], CITIES[n % len(CITIES)]
    return ContactRow(_phone(n), name=f"Demo {n}", first_name=first_name, fields={"city": city})


def _memberships(n: int) -> tuple[int, ...]:
    """Overlapping memberships: most in one category, some in two or three."""
    return tuple(i for i in range(3) if (n + i) % (i + 2) == 0) or (0,)


def _contacts_upsert(categories: list[Category]) -> None:
    """Upserted by groups of the same categories; a new contact then gets its demo state."""
    groups = defaultdict(list)
    for n in range(1, CONTACTS + 1):
        groups[_memberships(n)].append(n)
    for indexes, numbers in groups.items():
        number_of = {_phone(n): n for n in numbers}
        rows = [_row(n) for n in numbers]
        written = contacts_upsert(rows=rows, category_ids=[categories[i].pk for i in indexes])
        for contact_id, phone, created in written:
            if created:
                _demo_state(contact_id, number_of[phone])


def _demo_state(contact_id: int, n: int) -> None:
    if n % 50 == 7:
        contact_opt_out(contact=Contact.objects.get(pk=contact_id))
    if n % 60 == 0 and n <= 180:
        contact_mark_not_on_whatsapp(contact_id=contact_id)


def _campaign(device: Device, categories: list[Category]) -> Campaign:
    campaign, created = Campaign.objects.get_or_create(
        name=CAMPAIGN_NAME,
        defaults={
            "message_1_text": MESSAGE_1,
            "message_2_text": MESSAGE_2,
            "opt_out_confirmation": OPT_OUT_CONFIRMATION,
            "variable_fallbacks": {"first_name": "à vous"},
            "status": CampaignStatus.DRAFT,
        },
    )
    if created:
        campaign.categories.set(categories)
        campaign.devices.set([device])
    return campaign
