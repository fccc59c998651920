"""Test send: Message 1 rendered for a chosen contact, queued to a typed number on the campaign's
device and sent by the sender loop at the device's next slot (the real sandbox), counted in the
device's day, paced, never in the campaign's figures; through the function, the admin, the
operator page, the API and the command."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from rest_framework.test import APIClient

from campaigns.figures import campaign_counts
from campaigns.launch import campaign_launch
from campaigns.models import Campaign, CampaignStatus, Contact
from campaigns.test_send import TestSendRefused, campaign_test_send
from messaging.models import Device, DeviceDay, Message, MessageKind, MessageStatus
from messaging.sending import sender_run
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


def _device(campaign) -> Device:
    return Device.objects.get(pk=campaign.device_ids()[0])


def _send_due(campaign) -> None:
    """The sender loop serves the campaign's device until nothing is due (the clock moves)."""
    sender_run(device_id=campaign.device_ids()[0])


def test_a_test_send_is_queued_then_sent_by_the_sender_to_the_typed_number_never_in_the_figures(
    draft,
    sandbox,  # noqa: F811
    fake_clock,
):
    campaign, contact = draft

    result = campaign_test_send(campaign=campaign, contact=contact, phone=OWN_PHONE)

    assert (result.phone, result.text, result.leaves_at) == (OWN_E164, "Bonjour Ana", fake_clock.now())
    assert sandbox.messages() == [] and result.message.status == MessageStatus.PENDING  # queued, not sent
    _send_due(campaign)
    (received,) = sandbox.messages()
    assert (received["phone"], received["message"]) == (OWN_E164, "Bonjour Ana")
    sent = Message.objects.get(pk=result.message.pk)
    assert (sent.kind, sent.status, sent.phone, sent.contact) == (
        MessageKind.TEST,
        MessageStatus.SENT,
        OWN_E164,
        contact,
    )
    assert _sent_today(_device(campaign)) == 1 and _device(campaign).last_sent_at is not None
    counts = campaign_counts([campaign.pk])[campaign.pk]
    assert (counts.recipients, counts.sent) == (0, 0)


def test_a_test_send_while_the_device_waits_its_gap_leaves_when_told(draft, sandbox, fake_clock):  # noqa: F811
    campaign, contact = draft
    Device.objects.filter(pk=campaign.device_ids()[0]).update(
        last_sent_at=fake_clock.now() - timedelta(seconds=10)
    )

    first = campaign_test_send(campaign=campaign, contact=contact, phone=OWN_PHONE)
    second = campaign_test_send(campaign=campaign, contact=contact, phone=OWN_PHONE)

    start = fake_clock.now()
    assert first.leaves_at == start + timedelta(seconds=15)  # the rest of its 25 s gap
    assert second.leaves_at == start + timedelta(seconds=40)  # one gap after the first
    _send_due(campaign)
    sent_at = dict(Message.objects.filter(kind=MessageKind.TEST).values_list("pk", "sent_at"))
    assert sent_at == {first.message.pk: first.leaves_at, second.message.pk: second.leaves_at}
    assert len(sandbox.messages()) == 2 and _sent_today(_device(campaign)) == 2


def test_a_test_send_on_a_device_at_its_daily_limit_waits_for_the_next_utc_day(draft, sandbox, fake_clock):  # noqa: F811
    campaign, contact = draft
    allowance = 1000 - 100  # the follow-up reserve set aside
    device = _device(campaign)
    DeviceDay.objects.create(device=device, day=fake_clock.now().date(), message_1_count=allowance)

    result = campaign_test_send(campaign=campaign, contact=contact, phone=OWN_PHONE)

    midnight = fake_clock.now().replace(hour=0) + timedelta(days=1)
    assert result.leaves_at == midnight
    _send_due(campaign)
    assert sandbox.messages() == [] and _sent_today(device) == allowance
    assert Message.objects.get(pk=result.message.pk).status == MessageStatus.PENDING


def test_a_test_send_leaves_before_the_campaigns_own_messages_and_is_not_counted_in_them(
    client,
    draft,
    sandbox,  # noqa: F811
):
    campaign, contact = draft
    make_contact(first_name="Bo", categories=list(campaign.categories.all()))
    campaign_launch(campaign=campaign)
    campaign_test_send(campaign=campaign, contact=contact, phone=OWN_PHONE)
    campaign_test_send(
        campaign=campaign, contact=contact, phone=OWN_PHONE
    )  # again: once per contact is theirs

    _send_due(campaign)

    phones = [m["phone"] for m in sandbox.messages()]
    assert phones[:2] == [OWN_E164, OWN_E164] and len(phones) == 4
    counts = campaign_counts([campaign.pk])[campaign.pk]
    assert (counts.recipients, counts.sent) == (2, 2) and _sent_today(_device(campaign)) == 4
    client.force_login(get_user_model().objects.create_superuser("admin", "a@example.com", None))
    exported = b"".join(client.get(reverse("campaign-csv", args=[campaign.pk])).streaming_content).decode()
    assert len(exported.strip().splitlines()) == 1 + 2 and "99887766" not in exported
    api = APIClient()
    api.force_authenticate(get_user_model().objects.get(username="admin"))
    stats = api.get(f"/api/campaigns/{campaign.pk}/stats/").json()
    assert stats["messages"] == 2 and set(stats["by_kind"]) == {"message_1", "message_2"}


def test_a_launched_contact_gets_its_own_variant_and_refusals_queue_nothing(draft, sandbox):  # noqa: F811
    campaign, contact = draft
    other = make_contact(first_name="Bo", categories=list(campaign.categories.all()))
    campaign_launch(campaign=campaign)
    assert campaign_test_send(campaign=campaign, contact=other, phone=OWN_PHONE).text == "Salut Bo"

    nameless = make_contact(first_name="")
    with pytest.raises(TestSendRefused, match="has no {{ first_name }}"):
        campaign_test_send(campaign=campaign, contact=nameless, phone=OWN_PHONE)
    with pytest.raises(TestSendRefused, match="is not a phone number"):
        campaign_test_send(campaign=campaign, contact=contact, phone="abc")
    Contact.objects.filter(pk=contact.pk).update(opted_out_at=campaign.created_at)
    with pytest.raises(TestSendRefused, match="opted out"):
        campaign_test_send(campaign=campaign, contact=Contact.objects.get(pk=contact.pk), phone=OWN_PHONE)
    Campaign.objects.filter(pk=campaign.pk).update(status=CampaignStatus.CANCELLED)
    with pytest.raises(TestSendRefused, match="campaign is cancelled"):
        campaign_test_send(campaign=Campaign.objects.get(pk=campaign.pk), contact=other, phone=OWN_PHONE)
    Device.objects.filter(pk=campaign.device_ids()[0]).update(
        halted_at=campaign.created_at, halted_reason="offline"
    )
    with pytest.raises(TestSendRefused, match="is halted: offline"):
        campaign_test_send(campaign=campaign, contact=other, phone=OWN_PHONE)
    assert Message.objects.filter(kind=MessageKind.TEST).count() == 1


# --- Admin, operator page, API, command ------------------------------------------------------------


def test_the_admin_page_queues_a_test_and_says_when_it_leaves(client, draft, sandbox):  # noqa: F811
    campaign, _contact = draft
    client.force_login(get_user_model().objects.create_superuser("admin", "a@example.com", None))
    url = reverse("admin:campaigns_campaign_test_send", args=[campaign.pk])
    assert url in client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk])).content.decode()

    unknown = client.post(url, {"contact": "0600000000", "phone": OWN_PHONE})
    assert "No contact has the number 0600000000" in unknown.content.decode()
    response = client.post(url, {"contact": "06 12 34 56 78", "phone": OWN_PHONE}, follow=True)
    paced = client.post(url, {"contact": "06 12 34 56 78", "phone": OWN_PHONE}, follow=True)  # behind it
    _send_due(campaign)

    device = _device(campaign)
    assert [str(m) for m in response.context["messages"]] == [
        f"Test queued to {OWN_E164} from “{device}”, leaving now: Bonjour Ana"
    ]
    assert [str(m) for m in paced.context["messages"]] == [
        f"Test queued to {OWN_E164} from “{device}”, leaving at 2026-03-29 09:00:25 UTC"
        " (the device's pacing): Bonjour Ana"
    ]
    assert len(sandbox.messages()) == 2


def test_the_operator_page_queues_a_test(client, draft, sandbox):  # noqa: F811
    campaign, _contact = draft
    client.force_login(get_user_model().objects.create_user("op", is_staff=True, is_superuser=True))
    url = reverse("campaign-test-send", args=[campaign.pk])
    assert url in client.get(reverse("campaign-detail", args=[campaign.pk])).content.decode()

    response = client.post(url, {"contact": "+33612345678", "phone": OWN_PHONE}, follow=True)
    _send_due(campaign)

    assert response.redirect_chain[-1][0] == reverse("campaign-detail", args=[campaign.pk])
    assert (
        "Test queued to +33699887766" in response.content.decode()
        and "leaving now" in response.content.decode()
    )
    assert sandbox.messages()[0]["phone"] == OWN_E164


def test_the_api_queues_a_test_with_when_it_leaves(draft, sandbox, fake_clock):  # noqa: F811
    campaign, contact = draft
    api = APIClient()
    api.force_authenticate(get_user_model().objects.create_superuser("api", "b@example.com", None))
    url = f"/api/campaigns/{campaign.pk}/test-send/"

    queued = api.post(url, {"contact": contact.pk, "phone": OWN_PHONE}, format="json")
    paced = api.post(url, {"contact": contact.pk, "phone": OWN_PHONE}, format="json")  # behind it
    _send_due(campaign)

    assert queued.status_code == 202, queued.json()
    body = queued.json()
    assert (body["text"], body["phone"], body["leaves_at"]) == (
        "Bonjour Ana",
        OWN_E164,
        "2026-03-29T09:00:00Z",
    )
    assert Message.objects.get(pk=body["message"]).status == MessageStatus.SENT
    assert paced.status_code == 202 and paced.json()["leaves_at"] == "2026-03-29T09:00:25Z"
    listed = api.get("/api/messages/", {"kind": "test", "status": "sent"}).json()
    assert listed["count"] == 2 and {m["phone"] for m in listed["results"]} == {OWN_E164}
    refused = api.post(url, {"contact": contact.pk, "phone": "abc"}, format="json")
    assert refused.status_code == 400 and refused.json()["code"] == "test_send_refused"
    assert api.post(url, {"phone": OWN_PHONE}, format="json").status_code == 400


def test_the_command_queues_a_test_and_exits_3_when_refused(manage, draft, sandbox):  # noqa: F811
    campaign, contact = draft
    code, out, _err = manage("test_send", campaign.pk, "--contact", contact.pk, "--to", OWN_PHONE)
    assert code == 0 and "Test queued to +33699887766" in out and "leaving now" in out
    code, _out, err = manage("test_send", campaign.pk, "--contact", contact.pk, "--to", "abc")
    assert code == 3 and "is not a phone number" in err
    code, _out, _err = manage("test_send", 999999, "--contact", contact.pk, "--to", OWN_PHONE)
    assert code == 1
