"""After launch: a scheduled start, pause, resume and cancel, through the real send engine.

Wassenger is faked at the HTTP boundary (tests/fake_wassenger.py); time is the test clock.
"""

from datetime import timedelta
from unittest import mock

import pytest
import responses
from django.conf import settings

from campaigns.launch import campaign_launch
from campaigns.lifecycle import campaign_cancel, campaign_pause, campaign_resume
from campaigns.models import CampaignStatus
from campaigns.refusals import StatusRefused
from messaging.dispatch import dispatch_run
from messaging.models import Message, MessageKind, MessageStatus
from messaging.sending import SenderExit, sender_run
from tests import fake_wassenger
from tests.factories import make_campaign, make_category, make_contact, make_device

pytestmark = pytest.mark.django_db


@pytest.fixture
def api():
    """The fake Wassenger; `api.after_send` hooks run while a send is still in flight."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mocked:
        fake = fake_wassenger.FakeWassenger()
        fake.after_send = []

        def send(request):
            answer = fake.send(request)
            for hook in fake.after_send:
                hook(fake)
            return answer

        mocked.add_callback(responses.POST, f"{settings.WASSENGER_API_URL}/messages", callback=send)
        yield fake


@pytest.fixture
def device():
    return make_device(gap_seconds=25, batch_size=25, batch_pause_seconds=300, daily_limit=1000)


def launched(device, contacts: int, **fields):
    category = make_category()
    people = [make_contact(categories=[category]) for _ in range(contacts)]
    campaign = make_campaign(device=device, categories=[category], **fields)
    campaign_launch(campaign=campaign)
    campaign.refresh_from_db()
    return campaign, people


def statuses(campaign) -> dict[str, int]:
    rows = Message.objects.filter(campaign=campaign).values_list("status", flat=True)
    return {status: list(rows).count(status) for status in set(rows)}


def test_a_scheduled_campaign_starts_sending_at_its_minute(
    fake_clock, api, device, django_capture_on_commit_callbacks
):
    starts_at = fake_clock.now() + timedelta(hours=2)
    with django_capture_on_commit_callbacks() as callbacks:
        campaign, _ = launched(device, contacts=2, starts_at=starts_at)
    assert callbacks == []  # no sender before the start
    assert campaign.status == CampaignStatus.SCHEDULED
    assert set(Message.objects.filter(campaign=campaign).values_list("next_attempt_at", flat=True)) == {
        starts_at
    }

    fake_clock.current = starts_at - timedelta(minutes=1)
    assert dispatch_run()["campaigns_started"] == 0
    assert sender_run(device_id=device.pk) == SenderExit.IDLE
    fake_clock.current = starts_at
    assert dispatch_run()["campaigns_started"] == 1
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.SENDING
    sender_run(device_id=device.pk)
    assert [a.at for a in api.accepted] == [starts_at, starts_at + timedelta(seconds=25)]


def test_pause_mid_send_then_resume_sends_every_recipient_exactly_one_message_1(
    fake_clock, api, device, django_capture_on_commit_callbacks
):
    campaign, people = launched(device, contacts=8)

    def pause_at_the_third_send(fake):
        if len(fake.accepted) == 3:
            campaign_pause(campaign=campaign)  # the third send is still in flight

    api.after_send.append(pause_at_the_third_send)
    assert sender_run(device_id=device.pk) == SenderExit.IDLE
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.PAUSED
    assert statuses(campaign) == {MessageStatus.SENT: 3, MessageStatus.PENDING: 5}
    assert sender_run(device_id=device.pk) == SenderExit.IDLE  # a paused campaign sends nothing

    with mock.patch("messaging.dispatch.senders_wake") as senders_wake:
        with django_capture_on_commit_callbacks(execute=True):
            campaign_resume(campaign=campaign)
    senders_wake.assert_called_once()
    assert sender_run(device_id=device.pk) == SenderExit.IDLE
    assert sorted(api.phones()) == sorted(person.phone for person in people)
    assert statuses(campaign) == {MessageStatus.SENT: 8}


def test_cancel_stops_pending_messages_of_both_kinds_and_keeps_the_others(fake_clock, api, device):
    campaign, people = launched(device, contacts=5)
    messages = list(Message.objects.filter(campaign=campaign).order_by("id"))
    Message.objects.filter(pk=messages[0].pk).update(status=MessageStatus.SENT, sent_at=fake_clock.now())
    Message.objects.filter(pk=messages[1].pk).update(status=MessageStatus.SENDING)
    Message.objects.filter(pk=messages[2].pk).update(status=MessageStatus.UNKNOWN)
    Message.objects.create(
        campaign=campaign, contact=people[0], device=device, kind=MessageKind.MESSAGE_2, content="Merci"
    )

    assert campaign_cancel(campaign=campaign) == 3
    campaign.refresh_from_db()
    assert (campaign.status, campaign.finished_at) == (CampaignStatus.CANCELLED, fake_clock.now())
    assert statuses(campaign) == {
        MessageStatus.SENT: 1,
        MessageStatus.SENDING: 1,
        MessageStatus.UNKNOWN: 1,
        MessageStatus.CANCELLED: 3,
    }
    assert sender_run(device_id=device.pk) == SenderExit.IDLE
    assert api.accepted == []


def test_a_cancelled_scheduled_campaign_never_starts(fake_clock, api, device):
    campaign, _ = launched(device, contacts=2, starts_at=fake_clock.now() + timedelta(hours=1))
    assert campaign_cancel(campaign=campaign) == 2
    fake_clock.advance(7200)
    assert dispatch_run()["campaigns_started"] == 0
    assert sender_run(device_id=device.pk) == SenderExit.IDLE


@pytest.mark.parametrize(
    ("status", "action"),
    [
        (CampaignStatus.DRAFT, campaign_pause),
        (CampaignStatus.DRAFT, campaign_resume),
        (CampaignStatus.SCHEDULED, campaign_pause),
        (CampaignStatus.SENDING, campaign_resume),
        (CampaignStatus.PAUSED, campaign_pause),
        (CampaignStatus.CANCELLED, campaign_cancel),
        (CampaignStatus.COMPLETED, campaign_cancel),
    ],
)
def test_a_move_the_status_does_not_allow_is_refused_and_changes_nothing(fake_clock, status, action):
    campaign = make_campaign(status=status)
    with pytest.raises(StatusRefused, match=f"is {campaign.get_status_display()}: it cannot be") as refused:
        action(campaign=campaign)
    assert (refused.value.code, refused.value.http_status) == ("invalid_status", 409)
    campaign.refresh_from_db()
    assert campaign.status == status
    assert not Message.objects.exists()
