"""Late outcomes never lose Message 2: an event needing a send's outcome waits for it, however
long, spends no attempt meanwhile, and is processed as soon as the send is settled."""

import pytest

from config import clock
from messaging import wassenger
from messaging.claims import device_snapshot
from messaging.models import Device, Message, MessageStatus
from messaging.sending import message_reconcile, message_record_outcome
from messaging.wassenger.client import RemoteMessage
from tests.factories import make_contact, queue_message_1
from tests.webhooks.conftest import ack_event, hex_id, later, message_2_of, reply_event, wa_id
from tests.webhooks.test_receipts import a_claimed_send
from tests.webhooks.test_replies import in_doubt_message_1
from webhooks import replies
from webhooks.models import EventStatus, InboundMessage, InboundOutcome, WebhookEvent
from webhooks.processing import events_sweep

pytestmark = pytest.mark.django_db


def _settle_as_sent(message, *, sent_at, **ids) -> None:
    """What the sender's late answer or reconciliation does: Wassenger had it."""
    message.status, message.sent_at = MessageStatus.SENT, sent_at
    for field, value in ids.items():
        setattr(message, field, value)
    message.save()


def test_a_reply_waits_past_every_attempt_and_gets_message_2_with_its_own_time(post, fake_clock, settings):
    settings.WEBHOOK_MAX_ATTEMPTS = 2
    message = in_doubt_message_1()
    written = clock.now()
    post(reply_event(message.contact.phone, "Oui, intéressée"))
    for _ in range(10):  # ten sweeps over 30 hours: far more than the attempts allowed
        fake_clock.advance(3 * 3600)
        events_sweep()
    reply = WebhookEvent.objects.get()
    assert (reply.status, reply.attempts, reply.waiting_for_id) == (EventStatus.RECEIVED, 0, message.pk)
    assert InboundMessage.objects.get().outcome == InboundOutcome.WAITING
    _settle_as_sent(message, sent_at=later(written, minutes=-1))  # reconciliation, 30 h later
    assert events_sweep() == {EventStatus.PROCESSED: 1}
    message.refresh_from_db()
    assert message.replied_at == written  # judged on when the contact wrote: inside the window
    assert message_2_of(message).status == MessageStatus.PENDING
    row = InboundMessage.objects.get()
    assert (row.outcome, row.text, row.message_1_id) == (
        InboundOutcome.MESSAGE_2,
        "Oui, intéressée",
        message.pk,
    )


def test_a_waiting_reply_is_not_swept_while_its_message_is_unsettled(post, fake_clock):
    message = in_doubt_message_1()
    post(reply_event(message.contact.phone, "Oui"))
    fake_clock.advance(3600)
    assert events_sweep() == {}  # nothing to try: the message has no outcome yet


def test_a_receipt_settling_message_1_processes_the_waiting_reply_at_once(post, fake_clock):
    message = in_doubt_message_1()
    post(reply_event(message.contact.phone, "Oui"))
    message.sent_at = clock.now()
    message.save(update_fields=["sent_at"])
    post(ack_event(message, "delivered"))  # no sweep: the receipt releases the reply
    assert WebhookEvent.objects.get(event="message:in:new").status == EventStatus.PROCESSED
    assert message_2_of(message) is not None


def test_a_receipt_with_only_ids_waits_for_a_send_in_flight_to_its_number(post, fake_clock, settings):
    settings.WEBHOOK_MAX_ATTEMPTS = 2
    message = in_doubt_message_1()
    payload = ack_event(message, "read", reference=False)
    payload["data"]["id"] = payload["id"] = whatsapp_id = wa_id()
    post(payload)
    for _ in range(5):
        fake_clock.advance(600)
        events_sweep()
    receipt = WebhookEvent.objects.get()
    assert (receipt.status, receipt.waiting_for_id) == (EventStatus.RECEIVED, message.pk)
    _settle_as_sent(message, sent_at=clock.now(), whatsapp_id=whatsapp_id, wassenger_id=hex_id())
    assert events_sweep() == {EventStatus.PROCESSED: 1}
    message.refresh_from_db()
    assert message.status == MessageStatus.READ


def test_reconciliation_settling_message_1_processes_the_waiting_reply_at_once(
    post, fake_clock, monkeypatch, django_capture_on_commit_callbacks
):
    message, claim = a_claimed_send(fake_clock)
    message_record_outcome(claim=claim, result=None, error=wassenger.OutcomeUnknown("read timeout"))
    post(reply_event(message.contact.phone, "Oui"))
    assert WebhookEvent.objects.get().status == EventStatus.RECEIVED
    found = RemoteMessage(
        wassenger_id=hex_id(), whatsapp_id=wa_id(), status="sent", delivery_status="delivered",
        reference=str(message.reference), raw={}, sent_at=clock.now(),
    )  # fmt: skip
    monkeypatch.setattr(wassenger, "find_message_by_reference", lambda reference: found)
    with django_capture_on_commit_callbacks(execute=True):
        message_reconcile(Message.objects.get(pk=message.pk))
    assert WebhookEvent.objects.get().status == EventStatus.PROCESSED  # no sweep needed
    assert message_2_of(message) is not None


@pytest.mark.parametrize("claims_next", [False, True], ids=["alone", "fused-with-the-next-claim"])
def test_the_senders_own_answer_processes_at_once_the_reply_that_came_during_the_request(
    post, fake_clock, django_capture_on_commit_callbacks, claims_next
):
    message, claim = a_claimed_send(fake_clock)
    queue_message_1(campaign=message.campaign, contacts=[make_contact()])  # a next one to claim
    post(reply_event(message.contact.phone, "Oui, dites-m'en plus"))  # while Wassenger answers
    assert WebhookEvent.objects.get().waiting_for_id == message.pk
    accepted = wassenger.SendResult(wassenger_id=hex_id(), whatsapp_id=wa_id(), status="queued", raw={})
    device = Device.objects.get(pk=message.device_id)
    device.gap_seconds = 0  # the device may send again at once: the answer and the next claim fuse
    device.save(update_fields=["gap_seconds"])
    then = device_snapshot(device.pk, fake_clock.now()) if claims_next else None
    with django_capture_on_commit_callbacks(execute=True):
        next_claim = message_record_outcome(claim=claim, result=accepted, error=None, then_claim_for=then)
    assert (next_claim is not None) == claims_next
    assert WebhookEvent.objects.get().status == EventStatus.PROCESSED  # no sweep needed
    assert message_2_of(message).status == MessageStatus.PENDING
    assert InboundMessage.objects.get().outcome == InboundOutcome.MESSAGE_2


def test_a_message_settled_while_its_reply_looked_is_judged_again_at_once(post, fake_clock, monkeypatch):
    message = in_doubt_message_1()
    _settle_as_sent(message, sent_at=clock.now())
    stale = iter([message.pk])  # the first look saw it in flight; the sender settled it just after
    real = replies.message_1_in_flight
    monkeypatch.setattr(replies, "message_1_in_flight", lambda contact: next(stale, None) or real(contact))
    post(reply_event(message.contact.phone, "Oui"))
    assert WebhookEvent.objects.get().status == EventStatus.PROCESSED
    assert message_2_of(message) is not None


def test_an_outcome_still_unknown_releases_nothing(post, fake_clock, django_capture_on_commit_callbacks):
    message, claim = a_claimed_send(fake_clock)
    post(reply_event(message.contact.phone, "Oui"))
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        message_record_outcome(claim=claim, result=None, error=wassenger.OutcomeUnknown("read timeout"))
    assert callbacks == []  # it still waits: reconciliation will settle it, then release it
    assert WebhookEvent.objects.get().status == EventStatus.RECEIVED
