"""Opt-out confirmation (optional per campaign): a contact who writes a stop word gets the
campaign's acknowledgement once, from the number they answered, paced and counted in the
day's quota like a Message 2, and never in the campaign's funnel."""

from zoneinfo import ZoneInfo

import pytest
import responses

from campaigns.figures import campaign_counts
from campaigns.models import CampaignStatus
from config import clock
from messaging.models import DeviceDay, Message, MessageKind, MessageStatus
from messaging.sending import sender_run
from tests import fake_wassenger
from tests.factories import make_campaign, make_contact, make_device
from tests.webhooks.conftest import message_2_of, reply_event, sent_message_1
from webhooks.models import InboundMessage, InboundOutcome, WebhookEvent

pytestmark = pytest.mark.django_db

CONFIRMATION = "C'est noté {{ first_name }}, vous ne recevrez plus de messages."


def a_campaign(status=CampaignStatus.SENDING, *, confirmation: str = CONFIRMATION, device=None):
    campaign = make_campaign(
        opt_out_confirmation=confirmation, message_2_text="Merci !", device=device or make_device()
    )
    campaign.status = status
    campaign.save(update_fields=["status"])
    return campaign


def confirmation_of(message_1: Message) -> Message | None:
    return Message.objects.filter(contact=message_1.contact, kind=MessageKind.OPT_OUT).first()


def test_a_stop_word_queues_the_campaigns_confirmation_from_the_number_answered(post):
    message_1 = sent_message_1(campaign=a_campaign(), contact=make_contact(first_name="Chloé"))
    post(reply_event(message_1.contact.phone, "STOP"))
    message_1.contact.refresh_from_db()
    assert message_1.contact.opted_out_at is not None
    confirmation = confirmation_of(message_1)
    assert (confirmation.status, confirmation.device_id, confirmation.campaign_id) == (
        MessageStatus.PENDING,
        message_1.device_id,
        message_1.campaign_id,
    )
    assert confirmation.content == "C'est noté Chloé, vous ne recevrez plus de messages."
    assert message_2_of(message_1) is None
    assert InboundMessage.objects.get().outcome == InboundOutcome.OPT_OUT
    assert "opt-out confirmation queued" in WebhookEvent.objects.get().reason


def test_the_confirmation_is_sent_once_to_the_opted_out_contact_and_counts_in_the_quota(post, fake_clock):
    campaign = a_campaign()
    message_1 = sent_message_1(campaign=campaign, contact=make_contact(first_name="Léa"))
    post(reply_event(message_1.contact.phone, "Stop"))
    fake_clock.advance(60)
    post(reply_event(message_1.contact.phone, "STOP !!"))  # a second stop word: no second text
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        wassenger = fake_wassenger.install(mock)
        sender_run(device_id=message_1.device_id)
    assert [(a.phone, a.text) for a in wassenger.accepted] == [
        (message_1.contact.phone, "C'est noté Léa, vous ne recevrez plus de messages.")
    ]
    assert confirmation_of(message_1).status == MessageStatus.SENT
    day = DeviceDay.objects.get(device=message_1.device_id, day=clock.now().date())
    assert (day.message_1_count, day.message_2_count) == (0, 1)  # an answer: paced as Message 2
    counts = campaign_counts([campaign.pk])[campaign.pk]
    assert (counts.recipients, counts.message_2_sent) == (1, 0)  # the funnel counts no confirmation


@pytest.mark.parametrize("status", [CampaignStatus.PAUSED, CampaignStatus.COMPLETED])
def test_the_confirmation_is_owed_even_when_the_campaign_no_longer_sends(post, fake_clock, status):
    message_1 = sent_message_1(campaign=a_campaign(status))
    post(reply_event(message_1.contact.phone, "STOP"))
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        wassenger = fake_wassenger.install(mock)
        sender_run(device_id=message_1.device_id)
    assert wassenger.phones() == [message_1.contact.phone]


def test_a_campaign_without_a_confirmation_text_sends_none(post):
    message_1 = sent_message_1(campaign=a_campaign(confirmation=""))
    post(reply_event(message_1.contact.phone, "STOP"))
    assert confirmation_of(message_1) is None


def test_a_cancelled_campaign_sends_no_confirmation(post):
    message_1 = sent_message_1(campaign=a_campaign(CampaignStatus.CANCELLED))
    post(reply_event(message_1.contact.phone, "STOP"))
    assert confirmation_of(message_1) is None


def test_a_confirmation_naming_a_variable_the_contact_lacks_fails_rather_than_send_a_blank(post):
    campaign = a_campaign(confirmation="Bien noté {{ company }}.")
    message_1 = sent_message_1(campaign=campaign)
    post(reply_event(message_1.contact.phone, "STOP"))
    confirmation = confirmation_of(message_1)
    assert confirmation.status == MessageStatus.FAILED and "company" in confirmation.last_error


def test_the_dispatchers_opt_out_sweep_leaves_the_confirmation_pending(post):
    from messaging.dispatch import dispatch_run

    message_1 = sent_message_1(campaign=a_campaign())
    post(reply_event(message_1.contact.phone, "STOP"))
    dispatch_run()
    assert confirmation_of(message_1).status == MessageStatus.PENDING


@pytest.mark.parametrize("stop_after_minutes, leaves_at", [(0, "11:00"), (120, "09:00 the next day")])
def test_outside_the_send_window_the_confirmation_goes_only_within_its_allowance(
    post, fake_clock, stop_after_minutes, leaves_at
):
    # The clock stands at 11:00 in Paris; the device sends Message 1 between 09:00 and 10:00.
    device = make_device(send_window="mon-sun 09:00-10:00", time_zone="Europe/Paris")
    message_1 = sent_message_1(campaign=a_campaign(device=device))
    post(reply_event(message_1.contact.phone, "STOP"))  # an answer: an hour's allowance (60 min)
    fake_clock.advance(stop_after_minutes * 60)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        wassenger = fake_wassenger.install(mock)
        sender_run(device_id=device.pk)
    (sent,) = wassenger.accepted
    paris = sent.at.astimezone(ZoneInfo("Europe/Paris"))
    day = "" if paris.date() == message_1.sent_at.date() else " the next day"
    assert f"{paris:%H:%M}{day}" == leaves_at
