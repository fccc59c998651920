"""Test send: Message 1 rendered for a chosen contact, sent to a typed number through the campaign's
device (the real sandbox), counted in the device's day, paced, never in the campaign's figures;
through the function, the admin, the operator page, the API and the command."""

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from rest_framework.test import APIClient

from campaigns.figures import campaign_counts
from campaigns.launch import campaign_launch
from campaigns.test_send import DeviceBusy, NotNow, TestSendRefused, campaign_test_send
from messaging.models import Device, DeviceDay, Message
from messaging.sending import lease_acquire
from tests.factories import make_campaign, make_category, make_contact, make_device

# The real Wassenger sandbox process.
from tests.messaging.conftest import sandbox, sandbox_server  # noqa: F401

pytestmark = pytest.mark.django_db

OWN_PHONE = "06 99 88 77 66"
OWN_E164 = "+33699887766"


@pytest.fixture
def draft(fake_clock):
    category = make_category()
    contact = make_contact(first_name="Ana", phone="+33612345678", categories=[category])
    device = make_device(gap_seconds=25, batch_size=25, batch_pause_seconds=300, daily_limit=1000)
    campaign = make_campaign(
        device=device, categories=[category], message_1_text="{Bonjour|Salut} {{ first_name }}"
    )
    return campaign, contact


def _sent_today(device: Device) -> int:
    day = DeviceDay.objects.filter(device=device).first()
    return day.message_1_count if day else 0


def test_a_test_send_goes_to_the_typed_number_counted_on_the_device_not_in_the_campaign(draft, sandbox):  # noqa: F811
    campaign, contact = draft

    result = campaign_test_send(campaign=campaign, contact=contact, phone=OWN_PHONE)

    assert (result.phone, result.text) == (OWN_E164, "Bonjour Ana")
    (received,) = sandbox.messages()
    assert (received["phone"], received["message"]) == (OWN_E164, "Bonjour Ana")
    assert _sent_today(Device.objects.get(pk=campaign.device_ids()[0])) == 1
    assert Device.objects.get(pk=campaign.device_ids()[0]).last_sent_at is not None
    assert not Message.objects.exists() and campaign_counts([campaign.pk])[campaign.pk].recipients == 0


def test_a_second_test_send_waits_the_devices_gap(draft, sandbox, fake_clock):  # noqa: F811
    campaign, contact = draft
    campaign_test_send(campaign=campaign, contact=contact, phone=OWN_PHONE)

    with pytest.raises(NotNow, match="may send its next message at"):
        campaign_test_send(campaign=campaign, contact=contact, phone=OWN_PHONE)
    fake_clock.advance(30)
    campaign_test_send(campaign=campaign, contact=contact, phone=OWN_PHONE)

    assert len(sandbox.messages()) == 2 and _sent_today(Device.objects.get(pk=campaign.device_ids()[0])) == 2


def test_a_device_at_its_daily_limit_sends_no_test(draft, sandbox, fake_clock):  # noqa: F811
    campaign, contact = draft
    allowance = 1000 - 100  # the follow-up reserve set aside
    device = Device.objects.get(pk=campaign.device_ids()[0])
    DeviceDay.objects.create(device=device, day=fake_clock.now().date(), message_1_count=allowance)
    with pytest.raises(NotNow):
        campaign_test_send(campaign=campaign, contact=contact, phone=OWN_PHONE)
    assert sandbox.messages() == [] and _sent_today(device) == allowance


def test_a_device_whose_sender_holds_it_is_busy(draft, sandbox):  # noqa: F811
    campaign, contact = draft
    assert lease_acquire(device_id=campaign.device_ids()[0], owner="a-sender")
    with pytest.raises(DeviceBusy):
        campaign_test_send(campaign=campaign, contact=contact, phone=OWN_PHONE)
    assert sandbox.messages() == []


def test_a_launched_contact_gets_its_own_variant_and_refusals_send_nothing(draft, sandbox):  # noqa: F811
    campaign, contact = draft
    other = make_contact(first_name="Bo", categories=list(campaign.categories.all()))
    campaign_launch(campaign=campaign)
    assert campaign_test_send(campaign=campaign, contact=other, phone=OWN_PHONE).text == "Salut Bo"

    nameless = make_contact(first_name="")
    with pytest.raises(TestSendRefused, match="has no {{ first_name }}"):
        campaign_test_send(campaign=campaign, contact=nameless, phone=OWN_PHONE)
    with pytest.raises(TestSendRefused, match="is not a phone number"):
        campaign_test_send(campaign=campaign, contact=contact, phone="abc")
    assert len(sandbox.messages()) == 1


# --- Admin, operator page, API, command ------------------------------------------------------------


def test_the_admin_page_sends_a_test(client, draft, sandbox):  # noqa: F811
    campaign, _contact = draft
    client.force_login(get_user_model().objects.create_superuser("admin", "a@example.com", None))
    url = reverse("admin:campaigns_campaign_test_send", args=[campaign.pk])
    assert url in client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk])).content.decode()

    unknown = client.post(url, {"contact": "0600000000", "phone": OWN_PHONE})
    assert "No contact has the number 0600000000" in unknown.content.decode()
    response = client.post(url, {"contact": "06 12 34 56 78", "phone": OWN_PHONE}, follow=True)

    assert [str(m) for m in response.context["messages"]] == [
        f"Test sent to {OWN_E164} from “{Device.objects.get(pk=campaign.device_ids()[0])}”: Bonjour Ana"
    ]
    paced = client.post(url, {"contact": "06 12 34 56 78", "phone": OWN_PHONE})
    assert "may send its next message at" in paced.content.decode()
    assert len(sandbox.messages()) == 1


def test_the_operator_page_sends_a_test(client, draft, sandbox):  # noqa: F811
    campaign, _contact = draft
    client.force_login(get_user_model().objects.create_user("op", is_staff=True, is_superuser=True))
    url = reverse("campaign-test-send", args=[campaign.pk])
    assert url in client.get(reverse("campaign-detail", args=[campaign.pk])).content.decode()

    response = client.post(url, {"contact": "+33612345678", "phone": OWN_PHONE}, follow=True)

    assert response.redirect_chain[-1][0] == reverse("campaign-detail", args=[campaign.pk])
    assert "Test sent to +33699887766" in response.content.decode()
    assert sandbox.messages()[0]["phone"] == OWN_E164


def test_the_api_sends_a_test_and_answers_429_while_paced(draft, sandbox):  # noqa: F811
    campaign, contact = draft
    api = APIClient()
    api.force_authenticate(get_user_model().objects.create_superuser("api", "b@example.com", None))
    url = f"/api/campaigns/{campaign.pk}/test-send/"

    sent = api.post(url, {"contact": contact.pk, "phone": OWN_PHONE}, format="json")
    assert (
        sent.status_code == 200 and sent.json()["text"] == "Bonjour Ana" and sent.json()["phone"] == OWN_E164
    )
    paced = api.post(url, {"contact": contact.pk, "phone": OWN_PHONE}, format="json")
    assert paced.status_code == 429 and paced.json()["code"] == "paced" and paced.json()["not_before"]
    assert api.post(url, {"phone": OWN_PHONE}, format="json").status_code == 400


def test_the_command_sends_a_test_and_exits_3_when_refused(manage, draft, sandbox):  # noqa: F811
    campaign, contact = draft
    code, out, _err = manage("test_send", campaign.pk, "--contact", contact.pk, "--to", OWN_PHONE)
    assert code == 0 and "Test sent to +33699887766" in out
    code, _out, err = manage("test_send", campaign.pk, "--contact", contact.pk, "--to", OWN_PHONE)
    assert code == 3 and "may send its next message at" in err
    code, _out, _err = manage("test_send", 999999, "--contact", contact.pk, "--to", OWN_PHONE)
    assert code == 1
