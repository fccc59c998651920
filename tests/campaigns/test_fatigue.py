"""Fatigue rules at launch: contacts messaged lately, and contacts of other campaigns in progress,
are skipped and counted like the other skips, through the launch, the admin, the API and the command."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from campaigns.launch import campaign_launch, launch_preview
from campaigns.models import Campaign, CampaignStatus
from campaigns.refusals import NoRecipients
from config import clock
from messaging.models import Message, MessageKind, MessageStatus
from tests.factories import make_campaign, make_category, make_contact, make_message

pytestmark = pytest.mark.django_db


def _sent_to(contact, *, days_ago: float, status=CampaignStatus.COMPLETED, replied=False):
    """A Message 1 of another campaign, sent `days_ago` days before now."""
    other = make_campaign()
    Campaign.objects.filter(pk=other.pk).update(status=status)
    sent = clock.now() - timedelta(days=days_ago)
    return make_message(
        campaign=other,
        contact=contact,
        status=MessageStatus.SENT,
        sent_at=sent,
        replied_at=sent if replied else None,
    )


@pytest.fixture
def people(fake_clock):
    category = make_category("Clients")
    names = ("lately", "long_ago", "waiting_elsewhere", "replied_elsewhere", "fresh")
    contacts = {name: make_contact(first_name=name, categories=[category]) for name in names}
    _sent_to(contacts["lately"], days_ago=3)
    _sent_to(contacts["long_ago"], days_ago=10)
    waiting = make_campaign()
    Campaign.objects.filter(pk=waiting.pk).update(status=CampaignStatus.SENDING)
    make_message(campaign=waiting, contact=contacts["waiting_elsewhere"])  # pending, never sent
    _sent_to(contacts["replied_elsewhere"], days_ago=20, status=CampaignStatus.SENDING, replied=True)
    return category, contacts


def _recipients(campaign) -> set[str]:
    rows = Message.objects.filter(campaign=campaign, kind=MessageKind.MESSAGE_1)
    return set(rows.values_list("contact__first_name", flat=True))


def test_contacts_messaged_in_the_last_n_days_are_skipped_and_counted(people):
    category, _contacts = people
    campaign = make_campaign(categories=[category], fatigue_days=7)

    preview = launch_preview(campaign=campaign)
    assert (preview.recipients, preview.recently_messaged, preview.in_other_campaigns) == (4, 1, 0)

    campaign_launch(campaign=campaign)
    assert _recipients(campaign) == {"long_ago", "waiting_elsewhere", "replied_elsewhere", "fresh"}


def test_the_other_campaigns_option_also_skips_their_contacts(people):
    category, _contacts = people
    campaign = make_campaign(categories=[category], fatigue_days=7, skip_other_campaigns=True)

    preview = launch_preview(campaign=campaign)
    assert (preview.recipients, preview.recently_messaged, preview.in_other_campaigns) == (2, 1, 2)

    campaign_launch(campaign=campaign)
    assert _recipients(campaign) == {"long_ago", "fresh"}


def test_zero_days_skips_no_one(people):
    category, _contacts = people
    campaign = make_campaign(categories=[category], fatigue_days=0)
    assert campaign_launch(campaign=campaign).messages_created == 5


def test_a_new_campaign_takes_its_days_from_the_setting(settings):
    settings.LAUNCH_FATIGUE_DAYS = 3
    assert Campaign().fatigue_days == 3 and make_campaign().fatigue_days == 3


def test_when_every_contact_is_skipped_the_refusal_says_why(fake_clock):
    category = make_category()
    _sent_to(make_contact(categories=[category]), days_ago=1)
    campaign = make_campaign(categories=[category], fatigue_days=7)
    with pytest.raises(NoRecipients, match="1 messaged in the last 7 days"):
        campaign_launch(campaign=campaign)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(days=st.integers(0, 10), ages=st.lists(st.floats(0, 12), min_size=1, max_size=5))
def test_a_contact_is_skipped_exactly_when_its_last_message_1_is_younger_than_n_days(fake_clock, days, ages):
    category = make_category()
    for age in ages:
        _sent_to(make_contact(categories=[category]), days_ago=age)
    campaign = make_campaign(categories=[category], fatigue_days=days)

    expected = sum(1 for age in ages if days and age <= days)
    preview = launch_preview(campaign=campaign)
    assert preview.recently_messaged == expected and preview.recipients == len(ages) - expected


# --- Admin, API, command ----------------------------------------------------------------------


def test_the_admin_launch_page_counts_the_fatigue_skips(client, people):
    category, _contacts = people
    client.force_login(get_user_model().objects.create_superuser("admin", "a@example.com", None))
    campaign = make_campaign(categories=[category], fatigue_days=7, skip_other_campaigns=True)

    page = client.get(reverse("admin:campaigns_campaign_launch", args=[campaign.pk])).content.decode()

    assert "Skipped: received a Message 1 in the last 7 days</th><td>1</td>" in page
    assert "Skipped: in another campaign in progress</th><td>2</td>" in page
    assert "Launch to 2 recipients" in page


def test_the_api_takes_the_rules_and_reports_the_skips(people):
    category, _contacts = people
    api = APIClient()
    api.force_authenticate(get_user_model().objects.create_superuser("api", "b@example.com", None))
    body = {
        "name": "Tired",
        "devices": make_campaign().device_ids(),
        "categories": [category.pk],
        "message_1_text": "Bonjour",
        "message_2_text": "Merci",
        "skip_other_campaigns": True,
    }
    created = api.post("/api/campaigns/", body, format="json").json()
    assert created["fatigue_days"] == 7 and created["skip_other_campaigns"] is True

    preview = api.get(f"/api/campaigns/{created['id']}/stats/").json()["preview"]
    assert (preview["recipients"], preview["recently_messaged"], preview["in_other_campaigns"]) == (2, 1, 2)
    launched = api.post(f"/api/campaigns/{created['id']}/launch/", {}, format="json")
    assert launched.json()["messages_created"] == 2
    frozen = api.patch(f"/api/campaigns/{created['id']}/", {"fatigue_days": 0}, format="json")
    assert frozen.status_code == 409


def test_the_command_prints_the_fatigue_skips(manage, people):
    category, _contacts = people
    campaign = make_campaign(categories=[category], fatigue_days=7, skip_other_campaigns=True)
    code, out, _err = manage("launch_campaign", campaign.pk)
    assert code == 0
    assert "Skipped: 1 received a Message 1 in the last 7 days, 2 in another campaign" in out
    assert _recipients(campaign) == {"long_ago", "fresh"}
