"""Receipts and failures: statuses only move forward, whatever the order events arrive in."""

import itertools
from datetime import timedelta

import pytest
import responses

from campaigns.models import WhatsAppStatus
from config import clock
from messaging import wassenger
from messaging.claims import Claim, device_snapshot, message_claim
from messaging.dispatch import dispatch_run
from messaging.models import DeviceDay, Message, MessageKind, MessageStatus
from messaging.sending import message_reconcile, message_record_outcome, sender_run
from tests import fake_wassenger
from tests import wassenger_shapes as shapes
from tests.factories import make_contact, make_device, make_sending_campaign, queue_message_1
from tests.webhooks.conftest import ack_event, failed_event, hex_id, sent_message_1, wa_id
from webhooks.models import EventStatus, WebhookEvent
from webhooks.processing import events_sweep

pytestmark = pytest.mark.django_db


def test_a_delivered_then_a_read_receipt_move_the_message_forward(post, fake_clock):
    message = sent_message_1()
    fake_clock.advance(5)
    post(ack_event(message, "delivered"))
    message.refresh_from_db()
    assert (message.status, message.delivered_at, message.read_at) == ("delivered", fake_clock.now(), None)
    fake_clock.advance(60)
    post(ack_event(message, "read"))
    message.refresh_from_db()
    assert (message.status, message.read_at) == (MessageStatus.READ, fake_clock.now())
    assert message.delivered_at == fake_clock.now() - timedelta(seconds=60)


@pytest.mark.parametrize("order", list(itertools.permutations(["sent", "delivered", "read", "played"])))
def test_receipts_in_any_order_end_in_read_with_every_time_set(post, fake_clock, order):
    message = sent_message_1()
    for ack in order:
        fake_clock.advance(1)
        post(ack_event(message, ack))
    message.refresh_from_db()
    assert message.status == MessageStatus.READ
    assert message.delivered_at is not None and message.read_at is not None


def test_a_readed_receipt_ranks_as_read(post, fake_clock):
    message = sent_message_1()
    post(ack_event(message, "readed"))  # sic: SPEC's deliveryStatus enum has it
    message.refresh_from_db()
    assert (message.status, message.read_at) == (MessageStatus.READ, fake_clock.now())


def test_a_late_delivered_after_read_changes_nothing(post, fake_clock):
    message = sent_message_1()
    post(ack_event(message, "read"))
    message.refresh_from_db()
    before = (message.status, message.delivered_at, message.read_at, message.updated_at)
    fake_clock.advance(30)
    post(ack_event(message, "delivered"))
    message.refresh_from_db()
    assert (message.status, message.delivered_at, message.read_at, message.updated_at) == before
    assert "already read" in WebhookEvent.objects.order_by("id").last().reason


@pytest.mark.parametrize("status", [MessageStatus.UNKNOWN, MessageStatus.SENDING])
def test_a_receipt_settles_a_send_whose_outcome_was_unknown(post, fake_clock, status):
    message = sent_message_1(status=status, sent_at=None, attempts=1)
    message.sent_at = None
    message.save(update_fields=["sent_at"])
    post(ack_event(message, "delivered"))
    message.refresh_from_db()
    assert message.status == MessageStatus.DELIVERED
    assert message.sent_at is not None and message.delivered_at == fake_clock.now()


def test_message_out_new_links_the_ids_of_a_send_whose_answer_was_lost(post):
    message = sent_message_1(status=MessageStatus.UNKNOWN, sent_at=None, attempts=1)
    message.sent_at, message.wassenger_id, message.whatsapp_id = None, "", ""
    message.save()
    event = ack_event(message, "pending")
    event["event"] = "message:out:new"
    post(event)
    message.refresh_from_db()
    assert (message.status, message.whatsapp_id) == (MessageStatus.SENT, event["data"]["id"])
    assert message.sent_at is not None


def test_a_receipt_without_reference_finds_the_message_by_its_whatsapp_id(post):
    message = sent_message_1()
    post(ack_event(message, "read", reference=False))
    message.refresh_from_db()
    assert message.status == MessageStatus.READ


def test_a_failure_in_format_b_fails_the_message_with_wassengers_reason(post, fake_clock):
    message = sent_message_1()
    post(failed_event(message, "max retries exceeded", reference=False))
    message.refresh_from_db()
    assert (message.status, message.failed_at) == (MessageStatus.FAILED, fake_clock.now())
    assert message.last_error == "Wassenger: max retries exceeded"
    assert message.contact.whatsapp_status == WhatsAppStatus.UNKNOWN


def test_a_test_send_to_a_missing_number_leaves_its_contact_valid(post):
    message = sent_message_1()
    Message.objects.filter(pk=message.pk).update(kind=MessageKind.TEST, phone="+33699990000")
    post(failed_event(message, "number:notfound"))
    message.refresh_from_db()
    assert message.status == MessageStatus.FAILED
    assert message.contact.whatsapp_status != WhatsAppStatus.INVALID


@pytest.mark.parametrize(
    "reason, invalid",
    [
        ("Phone number does not exist on WhatsApp", True),
        ("phone number not found", True),
        ("Invalid phone number", True),
        ("invalid media file", False),
        ("message not found", False),
        # Wassenger's own failure codes decide, before any words (issue 18).
        ("number:notfound", True),
        ("number:notfound: Message could not be delivered", True),
        ("contact:blocked", False),
        ("chat:cannot_send: phone number not found", False),
        ("", False),  # no reason: the message fails, the contact stays
    ],
)
def test_only_a_number_not_found_failure_marks_the_contact_invalid(post, reason, invalid):
    message = sent_message_1()
    post(failed_event(message, reason))
    message.contact.refresh_from_db()
    assert (message.contact.whatsapp_status == WhatsAppStatus.INVALID) is invalid


def test_the_failure_of_an_earlier_copy_does_not_fail_the_copy_that_went_out(post):
    """A send whose answer was lost and that reconciliation missed goes out again, under
    the same reference: Wassenger may then report the first copy failed."""
    message = sent_message_1()
    first_copy = failed_event(message, "max retries exceeded")
    first_copy[0]["data"].update(id=hex_id(), waId=wa_id())
    post(first_copy)
    message.refresh_from_db()
    assert message.status == MessageStatus.SENT
    assert "another copy" in WebhookEvent.objects.get().reason


def test_a_failure_after_delivery_is_ignored(post):
    message = sent_message_1()
    post(ack_event(message, "delivered"))
    post(failed_event(message, "max retries exceeded"))
    message.refresh_from_db()
    assert message.status == MessageStatus.DELIVERED


def test_a_receipt_for_a_failed_message_does_not_revive_it(post):
    message = sent_message_1()
    post(failed_event(message, "max retries exceeded"))
    post(ack_event(message, "read"))
    message.refresh_from_db()
    assert message.status == MessageStatus.FAILED


def test_the_same_receipt_five_times_has_one_effect(post, fake_clock):
    message = sent_message_1()
    payload = ack_event(message, "delivered")
    post(payload)
    message.refresh_from_db()
    first = (message.status, message.delivered_at, message.updated_at)
    for _ in range(4):
        fake_clock.advance(10)
        post(payload)
    message.refresh_from_db()
    assert (message.status, message.delivered_at, message.updated_at) == first
    assert WebhookEvent.objects.count() == 1


def test_a_receipt_with_a_foreign_reference_is_not_ours(post):
    message = sent_message_1()
    payload = ack_event(message, "read")
    payload["data"]["reference"] = "00000000-0000-4000-8000-000000000000"
    post(payload)
    event = WebhookEvent.objects.get()
    assert (event.status, event.reason) == (
        EventStatus.PROCESSED,
        "not a Relance message (its reference is not ours)",
    )


def test_a_receipt_matching_nothing_yet_is_retried_by_the_sweeper_then_closed(post, fake_clock, settings):
    settings.WEBHOOK_MAX_ATTEMPTS = 3
    message = sent_message_1(whatsapp_id="")
    payload = ack_event(message, "delivered", reference=False)
    payload["data"]["id"] = payload["id"] = wa_id()
    post(payload)
    event = WebhookEvent.objects.get()
    assert (event.status, event.attempts) == (EventStatus.RECEIVED, 1)
    # The send's answer arrives meanwhile: the next sweep finds the message.
    message.whatsapp_id = payload["data"]["id"]
    message.save(update_fields=["whatsapp_id"])
    fake_clock.advance(60)
    assert events_sweep() == {EventStatus.PROCESSED: 1}
    message.refresh_from_db()
    assert message.status == MessageStatus.DELIVERED


def test_a_receipt_for_a_message_that_never_shows_up_is_closed_after_the_last_attempt(
    post, fake_clock, settings
):
    settings.WEBHOOK_MAX_ATTEMPTS = 3
    message = sent_message_1()
    payload = failed_event(message, "max retries exceeded", reference=False)
    payload[0]["entityId"] = hex_id()
    payload[0]["data"].update(id=payload[0]["entityId"], waId="")
    post(payload)
    for _ in range(2):
        fake_clock.advance(60)
        events_sweep()
    event = WebhookEvent.objects.get()
    assert (event.status, event.attempts) == (EventStatus.PROCESSED, 3)
    assert event.reason.startswith("no Relance message has id")


def test_an_id_too_long_for_its_column_is_not_linked_but_the_receipt_still_counts(post):
    message = sent_message_1(status=MessageStatus.UNKNOWN, sent_at=None, attempts=1, whatsapp_id="")
    message.sent_at = None
    message.save(update_fields=["sent_at"])
    payload = ack_event(message, "delivered")
    payload["data"]["waId"] = "W" * 200
    payload["data"]["id"] = hex_id()
    post(payload)
    message.refresh_from_db()
    assert (message.status, message.whatsapp_id) == (MessageStatus.DELIVERED, "")


# --- Regression: a receipt after reconciliation gave the day's quota back ------------------------


def a_lost_send(fake_clock, settings, fault: str = "timeout_lost") -> Message:
    """One Message 1 whose send got no answer and that Wassenger's lookup did not find:
    reconciliation gave its quota slot back. The receipt that arrives next proves it went."""
    device = make_device(gap_seconds=25, batch_size=25, batch_pause_seconds=300, daily_limit=1000)
    campaign = make_sending_campaign(device=device)
    queue_message_1(campaign=campaign, contacts=[make_contact()])
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        fake_wassenger.install(mock).script = [fault]
        sender_run(device_id=device.pk)
        fake_clock.advance(settings.RECONCILE_AFTER_SECONDS)
        dispatch_run()
    return Message.objects.get(campaign=campaign)


def sends_today(message: Message) -> int:
    day = DeviceDay.objects.filter(device=message.device_id, day=clock.now().date()).first()
    return day.total if day else 0


def test_a_receipt_after_reconciliation_gave_the_quota_back_charges_it_again(post, fake_clock, settings):
    message = a_lost_send(fake_clock, settings)
    assert (message.status, sends_today(message)) == (MessageStatus.PENDING, 0)
    post(ack_event(message, "delivered"))
    message.refresh_from_db()
    assert message.status == MessageStatus.DELIVERED and message.sent_at is not None
    assert sends_today(message) == 1
    post(ack_event(message, "read"))  # a second receipt charges nothing more
    assert sends_today(message) == 1


def test_a_receipt_for_a_send_reconciled_as_never_sent_and_failed_revives_it(post, fake_clock, settings):
    settings.RETRY_MAX_ATTEMPTS = 1  # a 500 spends the attempt (no answer at all would not)
    message = a_lost_send(fake_clock, settings, fault="500")
    assert (message.status, sends_today(message)) == (MessageStatus.FAILED, 0)
    post(ack_event(message, "delivered"))
    message.refresh_from_db()
    assert message.status == MessageStatus.DELIVERED and sends_today(message) == 1
    assert (message.failed_at, message.last_error) == (None, "")


# --- Regression: a receipt that settles a send first keeps its quota slot ---------------------------


def a_claimed_send(fake_clock) -> tuple[Message, Claim]:
    device = make_device(gap_seconds=25, batch_size=25, batch_pause_seconds=300, daily_limit=1000)
    campaign = make_sending_campaign(device=device)
    queue_message_1(campaign=campaign, contacts=[make_contact()])
    now = fake_clock.now()
    claim = message_claim(device=device_snapshot(device.pk, now), kinds=(MessageKind.MESSAGE_1,), now=now)
    return Message.objects.get(pk=claim.message_id), claim


def test_an_error_recorded_after_a_receipt_proved_the_send_keeps_its_quota(post, fake_clock):
    message, claim = a_claimed_send(fake_clock)
    post(ack_event(message, "delivered"))  # Wassenger took it, though its answer was a 500
    message_record_outcome(claim=claim, result=None, error=wassenger.Transient("boom", status=500))
    message.refresh_from_db()
    assert (message.status, sends_today(message)) == (MessageStatus.DELIVERED, 1)


def test_a_receipt_arriving_while_reconciliation_looks_the_send_up_keeps_its_quota(
    post, fake_clock, monkeypatch
):
    message, claim = a_claimed_send(fake_clock)
    message_record_outcome(claim=claim, result=None, error=wassenger.OutcomeUnknown("read timeout"))

    def lookup_misses_but_the_receipt_lands_meanwhile(reference):
        post(ack_event(message, "delivered"))
        return None

    monkeypatch.setattr(wassenger, "find_message_by_reference", lookup_misses_but_the_receipt_lands_meanwhile)
    message_reconcile(Message.objects.get(pk=message.pk))
    message.refresh_from_db()
    assert (message.status, sends_today(message)) == (MessageStatus.DELIVERED, 1)


# --- Wassenger's documented receipts (tests/wassenger_shapes.py): no reference in any ---------


def _documented(example, message):
    numbers = {shapes.SPEC_CONTACT_PHONE: message.contact.phone, "+44123456789": "+33755500002"}
    payload = shapes.renumbered(example, numbers, at=clock.now())
    first = payload[0] if isinstance(payload, list) else payload
    first["data"]["id"] = message.wassenger_id if isinstance(payload, list) else message.whatsapp_id
    if isinstance(payload, list):
        first["entityId"] = message.wassenger_id
    return payload


def test_spec_read_ack_without_a_reference_reaches_its_message_by_whatsapp_id(post):
    message = sent_message_1()
    payload = _documented(shapes.SPEC_OUT_ACK, message)
    assert "reference" not in payload["data"]
    post(payload)
    message.refresh_from_db()
    assert message.status == MessageStatus.READ


def test_spec_out_new_marks_nothing_back_and_reaches_its_message_by_whatsapp_id(post):
    message = sent_message_1(status=MessageStatus.SENDING, sent_at=None)
    post(_documented(shapes.SPEC_OUT_NEW, message))
    message.refresh_from_db()
    assert message.status in (MessageStatus.SENT, MessageStatus.DELIVERED) and message.sent_at is not None


def test_spec_failure_without_reference_or_reason_fails_the_message_by_its_24_hex_id(post):
    message = sent_message_1()
    post(_documented(shapes.SPEC_OUT_FAILED, message))
    message.refresh_from_db()
    assert message.status == MessageStatus.FAILED
    assert message.contact.whatsapp_status != WhatsAppStatus.INVALID
