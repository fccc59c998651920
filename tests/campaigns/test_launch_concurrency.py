"""Two operators launching the same campaign at once, on real PostgreSQL connections."""

import threading
import time

import pytest
from django.db import connection

from campaigns import launch
from campaigns.launch import campaign_launch
from campaigns.models import CampaignStatus
from campaigns.refusals import LaunchRefused
from messaging.models import Message
from tests.factories import make_campaign, make_category, make_contact

pytestmark = pytest.mark.django_db(transaction=True)


def launch_in_threads(campaign, count: int) -> list:
    """Launch from `count` threads (one connection each) released together; their outcomes."""
    barrier, outcomes = threading.Barrier(count), []

    def click():
        try:
            barrier.wait()
            outcomes.append(campaign_launch(campaign=campaign).messages_created)
        except LaunchRefused as refused:
            outcomes.append(refused.code)
        finally:
            connection.close()

    threads = [threading.Thread(target=click) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return outcomes


def test_two_simultaneous_launches_give_one_launch_and_one_clear_refusal(monkeypatch):
    category = make_category()
    contacts = {make_contact(categories=[category]).pk for _ in range(5)}
    campaign = make_campaign(categories=[category])
    monkeypatch.setattr("messaging.dispatch.senders_wake", lambda *args, **kwargs: None)
    real_insert = launch.message_1_insert

    def slow_insert(**arguments):
        # Hold the launch open long enough that the other click surely arrives meanwhile.
        created = real_insert(**arguments)
        time.sleep(0.3)
        return created

    monkeypatch.setattr(launch, "message_1_insert", slow_insert)
    started = time.monotonic()
    outcomes = launch_in_threads(campaign, 2)

    assert sorted(outcomes, key=str) == [5, "already_launched"]
    assert time.monotonic() - started < 5
    assert sorted(Message.objects.filter(campaign=campaign).values_list("contact_id", flat=True)) == sorted(
        contacts
    )
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.SENDING
