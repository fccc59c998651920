"""A bulk number check never delays a campaign: it runs on its own cluster.

Real senders and verify clusters, the sandbox on loopback. While 400 numbers are checked
as fast as the sandbox answers, a campaign paced at one send every 0.5 s keeps its slots.
"""

import time

import pytest

from campaigns.models import Campaign, Category, Contact, VerificationJob, VerificationStatus
from campaigns.verification import verification_start
from messaging.dispatch import sender_enqueue
from messaging.models import Message, MessageAttempt, MessageStatus
from tests.clusters import qcluster_kill, qcluster_start
from tests.factories import first_device_id, make_device, make_sending_campaign, queue_message_1
from tests.messaging.conftest import start_sandbox

pytestmark = pytest.mark.django_db(transaction=True)

GAP = 0.5
SENDS = 16
CHECKS = 400


def seed(settings) -> tuple[Campaign, Category]:
    device = make_device(gap_seconds=GAP, batch_size=100, batch_pause_seconds=0)
    Contact.objects.bulk_create(Contact(phone=f"+3365{n:07d}") for n in range(1, SENDS + CHECKS + 1))
    contacts = list(Contact.objects.order_by("id"))
    campaign = make_sending_campaign(device=device, name="Paced")
    queue_message_1(campaign=campaign, contacts=contacts[:SENDS])
    to_check = Category.objects.create(name="To check")
    to_check.contacts.set(contacts[SENDS:])
    return campaign, to_check


def test_a_bulk_check_running_beside_a_campaign_leaves_its_pacing_slots_alone(settings):
    sandbox = start_sandbox("--webhook-url", "", "--seed", "2")
    clusters = [
        qcluster_start(name=name, sandbox_url=sandbox.url, VERIFY_GAP_SECONDS="0")
        for name in ("senders", "verify")
    ]
    try:
        campaign, to_check = seed(settings)
        time.sleep(2)  # both clusters up
        job = verification_start(category=to_check)
        sender_enqueue(first_device_id(campaign))
        deadline = time.monotonic() + 90
        while Message.objects.filter(campaign=campaign, status=MessageStatus.SENT).count() < SENDS:
            assert time.monotonic() < deadline, "the campaign did not finish"
            time.sleep(0.2)
        checked_meanwhile = VerificationJob.objects.get(pk=job.pk).done
    finally:
        for cluster in clusters:
            qcluster_kill(cluster)
        sandbox.stop()
    # Pacing slots are the claim times (each attempt's start), not the answers' arrival.
    slots = list(
        MessageAttempt.objects.filter(message__campaign=campaign)
        .order_by("started_at")
        .values_list("started_at", flat=True)
    )
    assert len(slots) == SENDS
    gaps = [(b - a).total_seconds() for a, b in zip(slots, slots[1:], strict=False)]
    assert min(gaps) >= GAP - 0.01
    assert max(gaps) < GAP + 0.4, gaps  # no slot lost to the checks
    assert checked_meanwhile > 50, "the check did not run alongside the campaign"
    assert VerificationJob.objects.get(pk=job.pk).status in (
        VerificationStatus.RUNNING,
        VerificationStatus.DONE,
    )
