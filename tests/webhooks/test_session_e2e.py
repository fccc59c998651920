"""End to end: the number is unlinked (then re-linked), or banned, in the middle of a campaign.

The sandbox process switches its session live (`POST /sandbox/device`), posts the
`number:session` event to the live webhook URL and answers `GET /v1/devices` to match; a real
default django-q cluster processes the event. The test plays the senders' cluster by running
sender_run in a thread, as in test_sandbox_e2e.py.
"""

import threading
import time
from collections import Counter

import pytest
from django_q.models import Schedule

from campaigns.launch import campaign_launch
from campaigns.models import Campaign, Category, Contact
from messaging.models import Device, Message, MessageKind, MessageStatus
from messaging.sending import sender_run
from monitoring.checks import health_check_run
from monitoring.models import Incident
from tests.clusters import qcluster_kill, qcluster_start
from tests.factories import first_device_id, make_device
from tests.messaging.conftest import wait_for
from tests.webhooks.conftest import SECRET, sandbox_calling_live_server

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

CONTACTS = 30
GAP = 0.15  # seconds between two sends: the campaign lasts a few seconds


@pytest.fixture
def sandbox(live_server, settings):
    server = sandbox_calling_live_server(
        live_server, settings, "--reply-share", "0", "--delivered-delay", "0.05", "--read-delay", "0.05",
        "--webhook-retries", "3", "--webhook-backoff", "0.1",
    )  # fmt: skip
    yield server
    assert server.stop() == 0


@pytest.fixture
def default_cluster(sandbox):
    Schedule.objects.all().delete()  # only the webhook tasks
    cluster = qcluster_start(sandbox_url=sandbox.url, WASSENGER_WEBHOOK_SECRET=SECRET)
    yield cluster
    qcluster_kill(cluster)


def a_launched_campaign() -> Campaign:
    from messaging.wassenger.sandbox.state import SANDBOX_DEVICE_ID

    device = make_device(
        wassenger_id=SANDBOX_DEVICE_ID, gap_seconds=GAP, batch_size=1000, batch_pause_seconds=0
    )
    category = Category.objects.create(name="Session")
    for n in range(1, CONTACTS + 1):
        Contact.objects.create(phone=f"+3362{n:07d}", first_name=f"C{n}").categories.add(category)
    campaign = Campaign.objects.create(name="Session", message_1_text="Bonjour {{ first_name }}")
    campaign.categories.add(category)
    campaign.devices.add(device)
    campaign_launch(campaign=campaign)
    return campaign


def sender_in_thread(device_id: int) -> threading.Thread:
    def run():
        from django.db import connection

        try:
            sender_run(device_id=device_id)
        finally:
            connection.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def accepted(sandbox) -> int:
    return len(sandbox.messages())


def halted(device_id: int) -> bool:
    return Device.objects.filter(pk=device_id, halted_at__isnull=False).exists()


def stop_mid_campaign(sandbox, device_id: int, change: dict) -> int:
    """Let a few messages go, switch the session, and return what was sent when it halted."""
    thread = sender_in_thread(device_id)
    wait_for(lambda: accepted(sandbox) >= 5, timeout=20, interval=0.02)
    sandbox.control("POST", "device", change)
    wait_for(lambda: halted(device_id), timeout=10, interval=0.02)
    at_halt = accepted(sandbox)
    thread.join(timeout=10)
    assert not thread.is_alive(), "the sender kept going on a halted device"
    time.sleep(1)
    # Sending stops within one event: at most the send already in flight when it arrived.
    assert accepted(sandbox) <= at_halt + 1
    assert accepted(sandbox) < CONTACTS
    return accepted(sandbox)


def test_unlinked_then_relinked_the_campaign_stops_resumes_by_itself_and_sends_each_message_once(
    sandbox, default_cluster
):
    campaign = a_launched_campaign()
    device_id = first_device_id(campaign)
    sent = stop_mid_campaign(sandbox, device_id, {"session": "authorize"})
    device = Device.objects.get(pk=device_id)
    assert "phone unlinked: scan the QR code again" in device.halted_reason
    # Nothing is marked sent while unlinked: what Relance holds as sent is what Wassenger took.
    outgoing = Message.objects.filter(
        status__in=[MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.READ]
    )
    assert outgoing.count() == sent
    assert not Message.objects.filter(status=MessageStatus.SENDING).exists()

    sandbox.control("POST", "device", {"session": "online"})
    wait_for(lambda: not halted(device_id), timeout=10, interval=0.02)
    sender_in_thread(device_id).join(timeout=30)  # the wake-up the resume enqueued, played here
    wait_for(lambda: accepted(sandbox) == CONTACTS, timeout=30, interval=0.05)
    assert Counter(m["phone"] for m in sandbox.messages()) == {c.phone: 1 for c in Contact.objects.all()}
    assert not Message.objects.filter(kind=MessageKind.MESSAGE_1, status=MessageStatus.PENDING).exists()


def test_a_ban_halts_the_number_raises_an_incident_and_nothing_more_is_sent(sandbox, default_cluster):
    campaign = a_launched_campaign()
    device_id = first_device_id(campaign)
    sent = stop_mid_campaign(sandbox, device_id, {"session": "blocked", "status": "banned"})
    health_check_run()  # the 2-minute check: GET /v1/devices says banned
    device = Device.objects.get(pk=device_id)
    assert device.halted_reason == "device banned: number banned"
    assert (device.session_status, device.wassenger_status) == ("blocked", "banned")
    assert Incident.objects.filter(kind="number_banned", key=str(device_id), closed_at=None).exists()
    sender_in_thread(device_id).join(timeout=10)  # a sender woken anyway sends nothing
    time.sleep(0.5)
    assert accepted(sandbox) == sent
