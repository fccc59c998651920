"""A campaign's completion against what happens at the same moment on another connection:
an operator's pause, a reply's Message 2. Each side runs in its own thread, so on its own
PostgreSQL connection, with the other's transaction held open at the worst moment."""

import threading
from datetime import timedelta

import pytest
from django.db import connection, transaction

from campaigns import lifecycle
from campaigns.models import Campaign, CampaignStatus
from config import clock
from messaging.models import Message, MessageKind, MessageStatus
from tests.factories import make_contact, make_device, make_message, make_sending_campaign
from webhooks.replies import reply_record

pytestmark = pytest.mark.django_db(transaction=True)


def _in_thread(work, *, hold: threading.Event | None = None, holding: threading.Event | None = None):
    """Run `work` in a transaction on a connection of its own; with `hold`, keep the
    transaction open (after setting `holding`) until `hold` is set."""
    outcome = {}

    def run():
        try:
            with transaction.atomic():
                outcome["value"] = work()
                if holding is not None:
                    holding.set()
                if hold is not None:
                    hold.wait(10)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def _finished_campaign_with_a_late_reply():
    """Message 1 sent 30 h ago, answered (the contact wrote 29 h ago) only now: the campaign
    looks finished to the dispatcher, yet the reply is within its window."""
    campaign = make_sending_campaign(device=make_device())
    contact = make_contact()
    sent = clock.now() - timedelta(hours=30)
    make_message(campaign=campaign, contact=contact, status=MessageStatus.SENT, sent_at=sent)
    return campaign, contact, sent + timedelta(hours=1)


def test_a_reply_being_recorded_keeps_its_campaign_from_completing_under_it():
    campaign, contact, replied_at = _finished_campaign_with_a_late_reply()
    hold, holding = threading.Event(), threading.Event()
    record = lambda: reply_record(contact=contact, replied_at=replied_at)  # noqa: E731
    reply, _ = _in_thread(record, hold=hold, holding=holding)
    assert holding.wait(10)  # Message 2 created, its transaction still open

    completion, completed = _in_thread(lifecycle.campaigns_complete_finished)
    completion.join(0.5)
    hold.set()
    reply.join(10)
    completion.join(10)

    assert completed["value"] == 0
    assert Campaign.objects.get(pk=campaign.pk).status == CampaignStatus.SENDING
    follow_up = Message.objects.get(campaign=campaign, kind=MessageKind.MESSAGE_2)
    assert follow_up.status == MessageStatus.PENDING  # and will be sent: its campaign is sending


def test_a_reply_after_the_campaign_completed_creates_no_message_2_left_pending():
    campaign, contact, replied_at = _finished_campaign_with_a_late_reply()
    assert lifecycle.campaigns_complete_finished() == 1

    with transaction.atomic():  # as webhook processing calls it
        reply_record(contact=contact, replied_at=replied_at)

    assert not Message.objects.filter(campaign=campaign, kind=MessageKind.MESSAGE_2).exists()


def test_a_pause_at_the_moment_of_completion_is_kept():
    campaign, _, _ = _finished_campaign_with_a_late_reply()
    hold, holding = threading.Event(), threading.Event()
    pause, _ = _in_thread(lambda: lifecycle.campaign_pause(campaign=campaign), hold=hold, holding=holding)
    assert holding.wait(10)  # paused, not committed yet

    completion, completed = _in_thread(lifecycle.campaigns_complete_finished)
    completion.join(0.5)
    hold.set()
    pause.join(10)
    completion.join(10)

    assert completed["value"] == 0
    assert Campaign.objects.get(pk=campaign.pk).status == CampaignStatus.PAUSED
