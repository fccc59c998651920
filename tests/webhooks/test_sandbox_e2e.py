"""End to end: a campaign is launched, the real sender sends through the sandbox process,
whose events (message:out:new, acks with no reference, replies in both of Wassenger's
shapes, group messages) come back to the live webhook URL; repliers get Message 2 once,
whichever shape their reply has, stop-word senders and group messages nothing.

Everything is the production path but the senders cluster: the endpoint stores each
event with its task, a real default django-q cluster (a subprocess) processes them, and
the wake-ups it gives the sender loops are heard (LISTEN). The test plays the sender loop
by running sender_run.
"""

from collections import Counter

import pytest
from django_q.models import Schedule

from campaigns.launch import campaign_launch
from campaigns.models import Campaign, CampaignStatus, Category, Contact
from messaging.models import Message, MessageKind, MessageStatus
from messaging.sending import sender_run
from messaging.wassenger.sandbox.state import sandbox_fate, sandbox_reply_shape, sandbox_writes_in_group
from tests.clusters import WakeListener, qcluster_kill, qcluster_start
from tests.factories import first_device_id, make_device
from tests.messaging.conftest import wait_for
from tests.webhooks.conftest import SECRET, sandbox_calling_live_server
from webhooks.models import EventStatus, WebhookEvent

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

CONTACTS = 24
SEED, REPLY_SHARE, STOP_SHARE = 3, 0.5, 0.4
SPEC_SHAPE_SHARE, GROUP_SHARE = 0.5, 0.5


@pytest.fixture
def replying_sandbox(live_server, settings):
    server = sandbox_calling_live_server(
        live_server, settings,
        "--seed", str(SEED), "--reply-share", str(REPLY_SHARE), "--stop-share", str(STOP_SHARE),
        "--spec-shape-share", str(SPEC_SHAPE_SHARE), "--group-share", str(GROUP_SHARE),
        # message:out:new once Relance has recorded the send's answer: receipts carry no
        # reference, so they are matched by id (and no sweeper runs here to retry one).
        "--sent-delay", "0.3", "--delivered-delay", "0.05", "--read-delay", "0.05", "--reply-delay", "0.05",
        "--webhook-retries", "3", "--webhook-backoff", "0.1",
    )  # fmt: skip
    yield server
    assert server.stop() == 0


@pytest.fixture
def default_cluster(replying_sandbox):
    """`manage.py qcluster` (the default cluster) on the test database, in its own group."""
    Schedule.objects.all().delete()  # only the webhook tasks, no periodic jobs meanwhile
    cluster = qcluster_start(sandbox_url=replying_sandbox.url, WASSENGER_WEBHOOK_SECRET=SECRET)
    yield cluster
    qcluster_kill(cluster)


@pytest.fixture
def wakes():
    listener = WakeListener()
    yield listener
    listener.close()


def a_launched_campaign_to_every_contact(wakes) -> Campaign:
    device = make_device(gap_seconds=0, batch_size=1000, batch_pause_seconds=0)
    category = Category.objects.create(name="E2E")
    for n in range(1, CONTACTS + 1):
        Contact.objects.create(phone=f"+3361{n:07d}", first_name=f"C{n}").categories.add(category)
    campaign = Campaign.objects.create(
        name="E2E",
        message_1_text="Bonjour {{ first_name }}",
        message_2_text="Merci {{ first_name }} !",
    )
    campaign.categories.add(category)
    campaign.devices.add(device)
    assert campaign_launch(campaign=campaign).messages_created == CONTACTS
    assert Campaign.objects.get(pk=campaign.pk).status == CampaignStatus.SENDING
    assert wakes.devices() == [device.pk]  # the launch woke the device's sender: we play it
    wakes.clear()
    return campaign


def fates() -> dict[str, str]:
    phones = Contact.objects.values_list("phone", flat=True)
    return {p: sandbox_fate(p, seed=SEED, reply_share=REPLY_SHARE, stop_share=STOP_SHARE) for p in phones}


def reply_shapes(expected: dict[str, str]) -> Counter:
    """How many repliers write in SPEC's shape (fromNumber = our device) and in the other."""
    repliers = [p for p, fate in expected.items() if fate != "silent"]
    return Counter(sandbox_reply_shape(p, seed=SEED, spec_shape_share=SPEC_SHAPE_SHARE) for p in repliers)


def group_writers() -> set[str]:
    phones = Contact.objects.values_list("phone", flat=True)
    return {p for p in phones if sandbox_writes_in_group(p, seed=SEED, group_share=GROUP_SHARE)}


def delivered_webhooks(sandbox) -> int:
    return sandbox.control("GET", "stats")["counts"].get("webhooks_delivered", 0)


def every_reply_handled(expected: dict[str, str]) -> bool:
    repliers = [p for p, fate in expected.items() if fate == "reply"]
    stoppers = [p for p, fate in expected.items() if fate == "stop"]
    follow_ups = Message.objects.filter(kind=MessageKind.MESSAGE_2, contact__phone__in=repliers).count()
    opted_out = Contact.objects.filter(phone__in=stoppers, opted_out_at__isnull=False).count()
    return follow_ups == len(repliers) and opted_out == len(stoppers)


def test_replies_in_both_shapes_get_message_2_once_stop_words_and_group_messages_none(
    replying_sandbox, default_cluster, wakes
):
    campaign = a_launched_campaign_to_every_contact(wakes)
    expected = fates()
    assert {"reply", "stop", "silent"} <= set(expected.values()), "pick another seed"
    assert min(reply_shapes(expected)[shape] for shape in ("spec", "contact")) >= 2, "pick another seed"
    groups = group_writers()
    assert groups & {p for p, fate in expected.items() if fate == "silent"}, "pick another seed"
    device_id = first_device_id(campaign)
    sender_run(device_id=device_id)
    wait_for(lambda: every_reply_handled(expected), timeout=30, interval=0.1)
    assert wakes.devices() == [first_device_id(campaign)] * sum(fate == "reply" for fate in expected.values())
    sender_run(device_id=first_device_id(campaign))  # what the woken sender does: send the Message 2s
    fate_counts = Counter(expected.values())
    # message:out:new and two acks per message sent (Message 1 to all, Message 2 to repliers),
    # the replies, and one group message from each group writer.
    sent = CONTACTS + fate_counts["reply"]
    webhooks = 3 * sent + fate_counts["reply"] + fate_counts["stop"] + len(groups)
    wait_for(lambda: delivered_webhooks(replying_sandbox) == webhooks, timeout=15, interval=0.1)
    wait_for(lambda: not WebhookEvent.objects.filter(status=EventStatus.RECEIVED).exists(), timeout=10)
    assert WebhookEvent.objects.count() == webhooks

    received = Counter(m["phone"] for m in replying_sandbox.messages())
    assert received == {p: 2 if fate == "reply" else 1 for p, fate in expected.items()}
    texts = Counter(m["message"] for m in replying_sandbox.messages())
    contacts = Contact.objects.all()
    assert texts == {
        **{f"Bonjour {c.first_name}": 1 for c in contacts},
        **{f"Merci {c.first_name} !": 1 for c in contacts if expected[c.phone] == "reply"},
    }
    stoppers = {p for p, fate in expected.items() if fate == "stop"}
    assert set(Contact.objects.filter(opted_out_at__isnull=False).values_list("phone", flat=True)) == stoppers
    message_1_statuses = set(
        Message.objects.filter(kind=MessageKind.MESSAGE_1).values_list("status", flat=True)
    )
    assert message_1_statuses == {MessageStatus.READ}
    assert set(WebhookEvent.objects.values_list("status", flat=True)) == {EventStatus.PROCESSED}
    group_events = WebhookEvent.objects.filter(reason="group message: stored, never a reply")
    assert group_events.count() == len(groups)
    assert replying_sandbox.control("GET", "stats")["counts"].get("webhooks_given_up", 0) == 0
    follow_ups = Message.objects.filter(kind=MessageKind.MESSAGE_2).values_list("status", flat=True)
    assert set(follow_ups) == {MessageStatus.READ}
