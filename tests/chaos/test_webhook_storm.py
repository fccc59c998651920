"""Scenario 4: 1,000 generated bad bodies and 1,000 replays of real events, at once.

The replays (about 200 distinct events in Wassenger's real formats, each delivered five
times, shuffled) come over HTTP from four threads to a live server, while hypothesis
posts the bad bodies (any JSON, any bytes, real events with random edits) through the
test client; a real default cluster processes what is stored. Nothing answers 5xx, no
processing crashes, and each effect happens once: one stored event per distinct event,
one Message 2 (and one sender wake-up) per replying contact, receipts applied once,
opt-outs and failures once, and no quota charged for receipts of messages already sent.
"""

import json
import random
import threading
import time

import pytest
import requests
from django.test import Client
from django_q.models import OrmQ, Schedule
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from campaigns.models import Contact, WhatsAppStatus
from messaging.models import DeviceDay, Message, MessageKind, MessageStatus
from tests.clusters import TICK_SECONDS, WakeListener, qcluster_kill, qcluster_start
from tests.factories import make_campaign, make_contact
from tests.webhooks.conftest import SECRET, URL, ack_event, failed_event, reply_event, sent_message_1
from tests.webhooks.test_endpoint import JSON, mutated
from webhooks.ingest import event_describe
from webhooks.models import EventStatus, WebhookEvent
from webhooks.processing import events_sweep

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

RECEIPTS, REPLIES, STOPS, FAILURES = 80, 30, 10, 5
REPLAYS, BAD_BODIES, THREADS = 1000, 1000, 4
DECOY_PHONE = "+33699999999"


@pytest.fixture
def default_cluster(settings):
    settings.WASSENGER_WEBHOOK_SECRET = SECRET
    settings.WEBHOOK_SWEEP_AFTER_SECONDS = 0  # the test ticks the sweeper itself
    Schedule.objects.all().delete()  # no periodic job meanwhile
    cluster = qcluster_start()
    yield cluster
    qcluster_kill(cluster)


def real_events() -> tuple[list, dict]:
    """Distinct events about one campaign's messages, and what each group of contacts is."""
    campaign = make_campaign(message_2_text="Merci {{ first_name }} !", status="sending")
    sent = [sent_message_1(campaign=campaign) for _ in range(RECEIPTS + FAILURES)]
    receipts, failing = sent[:RECEIPTS], sent[RECEIPTS:]
    repliers, stoppers = receipts[:REPLIES], receipts[REPLIES : REPLIES + STOPS]
    events = [ack_event(m, ack) for m in receipts for ack in ("delivered", "read")]
    events += [reply_event(m.contact.phone, "Oui, je suis intéressé") for m in repliers]
    events += [reply_event(m.contact.phone, "Arrêt !") for m in stoppers]
    events += [failed_event(m, "Phone number does not exist on WhatsApp") for m in failing]
    groups = {"receipts": receipts, "repliers": repliers, "stoppers": stoppers, "failing": failing}
    return events, groups


def decoy_events() -> list:
    """Real events about a message outside the replayed set: the seeds of the bad bodies."""
    decoy = sent_message_1(contact=make_contact(phone=DECOY_PHONE))
    return [
        ack_event(decoy, "delivered"),
        ack_event(decoy, "read", reference=False),
        reply_event(decoy.contact.phone, "Oui"),
        failed_event(decoy, "Phone number does not exist on WhatsApp"),
    ]


def replay_from_threads(url: str, events: list, statuses: list) -> list[threading.Thread]:
    """Deliver each event REPLAYS / len(events) times or so, shuffled, over THREADS threads."""
    deliveries = [events[i % len(events)] for i in range(REPLAYS)]
    random.Random(4).shuffle(deliveries)

    def deliver(share: list) -> None:
        with requests.Session() as session:
            for event in share:
                statuses.append(
                    session.post(f"{url}{URL}?secret={SECRET}", json=event, timeout=30).status_code
                )

    threads = [threading.Thread(target=deliver, args=(deliveries[i::THREADS],)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    return threads


def post_bad_bodies(decoys: list, statuses: list) -> None:
    bodies = st.one_of(
        JSON.map(lambda body: json.dumps(body).encode()),
        st.binary(max_size=200),
        st.sampled_from(decoys).flatmap(mutated).map(lambda body: json.dumps(body).encode()),
    )
    client = Client()

    @hypothesis_settings(
        max_examples=BAD_BODIES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(raw=bodies)
    def post_one(raw: bytes) -> None:
        response = client.post(f"{URL}?secret={SECRET}", data=raw, content_type="application/json")
        statuses.append(response.status_code)
        assert response.status_code in (200, 400), response.content

    post_one()


def settle(deadline_seconds: float = 60) -> None:
    """Tick the sweeper (same function as the one-minute job) until no event waits."""
    deadline = time.monotonic() + deadline_seconds
    while (
        WebhookEvent.objects.filter(status=EventStatus.RECEIVED).exists()
        or OrmQ.objects.filter(key="default").exists()
    ):
        assert time.monotonic() < deadline, WebhookEvent.objects.filter(status=EventStatus.RECEIVED).count()
        events_sweep()
        time.sleep(TICK_SECONDS)


@pytest.fixture
def wakes():
    listener = WakeListener()
    yield listener
    listener.close()


def test_a_storm_of_bad_bodies_and_replayed_events_answers_no_5xx_and_acts_once(
    live_server, default_cluster, wakes
):
    events, groups = real_events()
    decoys = decoy_events()
    replayed, bad = [], []
    threads = replay_from_threads(live_server.url, events, replayed)
    post_bad_bodies(decoys, bad)
    for thread in threads:
        thread.join(timeout=120)
    settle()

    assert (len(replayed), len(bad)) == (REPLAYS, BAD_BODIES)
    assert [code for code in replayed + bad if code >= 500] == [] and set(replayed) == {200}
    assert not WebhookEvent.objects.filter(status=EventStatus.FAILED).exists()  # no processing crashed
    keys = {
        event_describe(item).dedup_key
        for event in events
        for item in (event if isinstance(event, list) else [event])
    }
    stored = WebhookEvent.objects.filter(dedup_key__in=keys)
    assert (stored.count(), set(stored.values_list("status", flat=True))) == (
        len(keys),
        {EventStatus.PROCESSED},
    )

    assert statuses_of(groups["receipts"]) == {MessageStatus.READ}
    assert statuses_of(groups["failing"]) == {MessageStatus.FAILED}
    decoy = Contact.objects.get(phone=DECOY_PHONE)
    contacts = Contact.objects.exclude(pk=decoy.pk)
    follow_ups = Message.objects.filter(kind=MessageKind.MESSAGE_2).exclude(contact=decoy)
    assert sorted(follow_ups.values_list("contact_id", flat=True)) == contact_ids(groups["repliers"])
    assert contact_ids(groups["stoppers"]) == sorted(
        contacts.filter(opted_out_at__isnull=False).values_list("id", flat=True)
    )
    invalid = contacts.filter(whatsapp_status=WhatsAppStatus.INVALID)
    assert contact_ids(groups["failing"]) == sorted(invalid.values_list("id", flat=True))
    # One sender wake-up per Message 2 created (the decoy's contact may have one too).
    assert len(wakes.devices()) == Message.objects.filter(kind=MessageKind.MESSAGE_2).count()
    assert DeviceDay.objects.count() == 0  # receipts of messages already sent charge nothing


def statuses_of(messages: list[Message]) -> set[str]:
    return set(Message.objects.filter(pk__in=[m.pk for m in messages]).values_list("status", flat=True))


def contact_ids(messages: list[Message]) -> list[int]:
    return sorted(m.contact_id for m in messages)
