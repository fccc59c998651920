"""Demo data for a newcomer's first ten minutes: `python manage.py demo`.

A sandbox device with demo pacing (clearly labelled: real devices keep 25 s / 25 / 300 s),
three overlapping categories of about 300 contacts (a few opted out, a few known to be
invalid, a few that the sandbox will reject at send time) and a ready, personalised
campaign. Running it again changes nothing: every row is found by its natural key.
"""

from dataclasses import dataclass

from django.db import transaction

from campaigns.models import Campaign, CampaignStatus, Category, Contact, WhatsAppStatus
from config import clock
from messaging.models import Device

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
    contacts = [_contact(n, categories) for n in range(1, CONTACTS + 1)]
    campaign = _campaign(device, categories)
    return DemoSummary(
        device=device,
        campaign=campaign,
        contacts=len(contacts),
        opted_out=sum(c.opted_out_at is not None for c in contacts),
        invalid=sum(c.whatsapp_status == WhatsAppStatus.INVALID for c in contacts),
    )


def _device() -> Device:
    device, _ = Device.objects.get_or_create(
        label=DEVICE_LABEL,
        defaults={"gap_seconds": 2, "batch_size": 25, "batch_pause_seconds": 20, "daily_limit": 1000},
    )
    return device


def _contact(n: int, categories: list[Category]) -> Contact:
    # Numbers ending in 0000 do not exist in the sandbox: five of them, the last two not yet
    # known as invalid, so the demo also shows a failure coming back by webhook.
    phone = f"+3361{n:03d}0000" if n % 60 == 0 else f"+33612{n:06d}"
    contact, created = Contact.objects.get_or_create(
        phone=phone,
        defaults={
            "first_name": FIRST_NAMES[n % len(FIRST_NAMES)],
            "name": f"Demo {n}",
            "fields": {"city": CITIES[n % len(CITIES)]},
            "opted_out_at": clock.now() if n % 50 == 7 else None,
            "whatsapp_status": WhatsAppStatus.INVALID if n % 60 == 0 and n <= 180 else WhatsAppStatus.UNKNOWN,
        },
    )
    if created:  # overlapping memberships: most in one category, some in two or three
        contact.categories.set([categories[i] for i in range(3) if (n + i) % (i + 2) == 0] or [categories[0]])
    return contact


def _campaign(device: Device, categories: list[Category]) -> Campaign:
    campaign, created = Campaign.objects.get_or_create(
        name=CAMPAIGN_NAME,
        defaults={
            "device": device,
            "message_1_text": MESSAGE_1,
            "message_2_text": MESSAGE_2,
            "variable_fallbacks": {"first_name": "à vous"},
            "status": CampaignStatus.DRAFT,
        },
    )
    if created:
        campaign.categories.set(categories)
    return campaign
