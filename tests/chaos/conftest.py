"""The chaos suite: Relance under faults, each scenario against real processes.

Every scenario runs a real django-q cluster (a subprocess), real PostgreSQL and the
Wassenger sandbox on loopback, with pacing and waits shrunk (tests/clusters.py SHRUNK):
the same rules on a faster clock. The one-minute jobs (dispatcher, webhook sweeper) are
ticked by the test every 0.3 s instead of by the scheduler: same functions.

The fifth check of issue 11, `manage.py check --deploy` clean with production settings,
is tests/test_settings.py::test_deploy_check_is_clean_with_production_settings.
"""

from collections import Counter

from campaigns.models import Campaign, Category, Contact, WhatsAppStatus
from config import clock
from messaging.models import ACCEPTED_STATUSES, DeviceDay, Message


def contacts_in_overlapping_categories(*, eligible: int, opted_out: int, invalid: int, prefix: str) -> list:
    """Three categories sharing a third of their contacts; returns the three categories.

    Phones are `+33<prefix><7 digits>` from 1 (none ends in the sandbox's invalid 0000):
    the first `eligible` may receive Message 1, then the opted-out ones, then those known
    not to be on WhatsApp.
    """
    now, total = clock.now(), eligible + opted_out + invalid
    contacts = Contact.objects.bulk_create(
        Contact(
            phone=f"+33{prefix}{n:07d}",
            first_name=f"C{n}",
            opted_out_at=now if eligible < n <= eligible + opted_out else None,
            whatsapp_status=WhatsAppStatus.INVALID if n > eligible + opted_out else WhatsAppStatus.UNKNOWN,
        )
        for n in range(1, total + 1)
    )
    categories = [Category.objects.create(name=f"Chaos {prefix} {i}") for i in range(3)]
    # Contact n is in category n % 3, and every third contact in the next one too.
    links = [(c, categories[n % 3]) for n, c in enumerate(contacts)]
    links += [(c, categories[(n + 1) % 3]) for n, c in enumerate(contacts) if n % 3 == 0]
    through = Contact.categories.through
    through.objects.bulk_create(through(contact=c, category=g) for c, g in links)
    return categories


def eligible_phones(campaign: Campaign) -> set[str]:
    """Phones of the campaign's categories that may receive it: not opted out, not invalid."""
    contacts = Contact.objects.filter(categories__in=campaign.categories.all(), opted_out_at__isnull=True)
    return set(contacts.exclude(whatsapp_status=WhatsAppStatus.INVALID).values_list("phone", flat=True))


def accepted_by_phone(sandbox, kind_text: str = "") -> Counter:
    """How many messages the sandbox accepted per phone (those whose text starts with `kind_text`)."""
    return Counter(m["phone"] for m in sandbox.messages() if m["message"].startswith(kind_text))


def assert_counters_match_accepted_sends() -> None:
    """Each device's daily counter equals the messages Wassenger accepted from it that day."""
    counted = {(d.device_id, d.day): d.total for d in DeviceDay.objects.all() if d.total}
    accepted = Counter(
        (device, sent_at.date())
        for device, sent_at in Message.objects.filter(status__in=ACCEPTED_STATUSES).values_list(
            "device_id", "sent_at"
        )
    )
    assert counted == dict(accepted)
