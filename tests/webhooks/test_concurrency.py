"""Real threads, real transactions: concurrent deliveries of a reply make one Message 2."""

import json
import threading

import pytest
from django.db import connection
from django.test import Client
from django_q.conf import Conf

from messaging.models import Message, MessageKind
from tests.webhooks.conftest import SECRET, URL, reply_event, sent_message_1, wa_id
from webhooks.models import EventStatus, WebhookEvent

pytestmark = pytest.mark.django_db(transaction=True)

THREADS = 20


@pytest.fixture
def threaded_inline_tasks(monkeypatch, settings, wakeups):
    monkeypatch.setattr(Conf, "SYNC", True)
    settings.WASSENGER_WEBHOOK_SECRET = SECRET
    return wakeups


def deliver_at_once(payloads: list[dict]) -> list[int]:
    """POST each payload from its own thread, all released together; the status codes."""
    start = threading.Barrier(len(payloads))
    statuses: list[int] = []

    def deliver(payload: dict) -> None:
        try:
            start.wait()
            response = Client().post(
                f"{URL}?secret={SECRET}", json.dumps(payload), content_type="application/json"
            )
            statuses.append(response.status_code)
        finally:
            connection.close()  # each thread has its own connection

    threads = [threading.Thread(target=deliver, args=(payload,)) for payload in payloads]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return statuses


def test_twenty_concurrent_deliveries_of_one_reply_make_one_event_and_one_message_2(threaded_inline_tasks):
    message = sent_message_1()
    payload = reply_event(message.contact.phone, "Oui")
    assert deliver_at_once([payload] * THREADS) == [200] * THREADS
    assert WebhookEvent.objects.get().status == EventStatus.PROCESSED
    assert Message.objects.filter(kind=MessageKind.MESSAGE_2).count() == 1
    assert threaded_inline_tasks.devices == [message.device_id]


def test_twenty_different_replies_at_once_from_one_contact_make_one_message_2(threaded_inline_tasks):
    message = sent_message_1()
    payloads = [reply_event(message.contact.phone, "Oui", inbound_id=wa_id()) for _ in range(THREADS)]
    assert deliver_at_once(payloads) == [200] * THREADS
    assert WebhookEvent.objects.filter(status=EventStatus.PROCESSED).count() == THREADS
    assert Message.objects.filter(kind=MessageKind.MESSAGE_2).count() == 1
    assert threaded_inline_tasks.devices == [message.device_id]
