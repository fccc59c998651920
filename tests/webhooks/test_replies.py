"""Replies: Message 2 once inside the 24 h window, nothing after it, opt-out on a stop word."""

import pytest

from campaigns.models import CampaignStatus
from config import clock
from messaging.models import Message, MessageKind, MessageStatus
from tests import wassenger_shapes as shapes
from tests.factories import make_campaign, make_contact, make_message
from tests.webhooks.conftest import ack_event, later, message_2_of, reply_event, sent_message_1
from webhooks.models import EventStatus, WebhookEvent
from webhooks.processing import events_reprocess, events_sweep, windows_expire
from webhooks.replies import fold

pytestmark = pytest.mark.django_db


def test_a_reply_creates_message_2_personalised_and_wakes_the_sender(post, fake_clock, inline_tasks):
    message = sent_message_1(contact=make_contact(first_name="Léa"))
    fake_clock.advance(3600)
    post(reply_event(message.contact.phone, "Oui, dites-m'en plus"))
    follow_up = message_2_of(message)
    assert (follow_up.content, follow_up.status, follow_up.device_id) == (
        "Merci Léa !",
        "pending",
        message.device_id,
    )
    assert follow_up.next_attempt_at == fake_clock.now()
    message.refresh_from_db()
    assert message.replied_at == fake_clock.now()
    assert inline_tasks.devices == [message.device_id]


def test_the_same_reply_delivered_five_times_creates_one_message_2(post, inline_tasks):
    message = sent_message_1()
    payload = reply_event(message.contact.phone, "Oui")
    for _ in range(5):
        assert post(payload).status_code == 200
    assert Message.objects.filter(kind=MessageKind.MESSAGE_2).count() == 1
    assert WebhookEvent.objects.count() == 1
    assert inline_tasks.devices == [message.device_id]


def test_a_second_reply_from_the_same_contact_creates_no_second_message_2(post, fake_clock):
    message = sent_message_1()
    post(reply_event(message.contact.phone, "Oui"))
    fake_clock.advance(60)
    post(reply_event(message.contact.phone, "Vous êtes là ?"))
    assert Message.objects.filter(kind=MessageKind.MESSAGE_2).count() == 1
    assert "already answered" in WebhookEvent.objects.order_by("id").last().reason


def in_doubt_message_1() -> Message:
    """A Message 1 whose send has no outcome yet (its answer was lost)."""
    campaign = make_campaign(message_2_text="Merci !")
    campaign.status = CampaignStatus.SENDING
    campaign.save(update_fields=["status"])
    return make_message(campaign=campaign, contact=make_contact(), status=MessageStatus.UNKNOWN)


def test_a_reply_that_overtakes_its_message_1_outcome_waits_for_it_then_gets_message_2(post, fake_clock):
    message = in_doubt_message_1()
    post(reply_event(message.contact.phone, "Oui"))
    reply = WebhookEvent.objects.get()
    assert reply.status == EventStatus.RECEIVED and "still being sent" in reply.reason
    assert message_2_of(message) is None
    post(ack_event(message, "delivered"))  # the receipt settles Message 1
    fake_clock.advance(60)
    events_sweep()
    reply.refresh_from_db()
    assert reply.status == EventStatus.PROCESSED
    assert message_2_of(message).status == MessageStatus.PENDING


@pytest.mark.parametrize(
    "hours, minutes, follows_up", [(23, 59, True), (24, 0, True), (24, 1, False), (30, 0, False)]
)
def test_a_reply_gets_message_2_only_within_24_hours_of_message_1(
    post, fake_clock, hours, minutes, follows_up
):
    message = sent_message_1()
    fake_clock.advance(hours * 3600 + minutes * 60)
    post(reply_event(message.contact.phone, "Oui"))
    assert (message_2_of(message) is not None) is follows_up
    if not follows_up:
        assert "after the 24 h window" in WebhookEvent.objects.get().reason


def test_a_reply_written_inside_the_window_but_delivered_late_still_gets_message_2(post, fake_clock):
    message = sent_message_1()
    written = later(fake_clock.now(), hours=23, minutes=59)
    fake_clock.advance(25 * 3600)  # Wassenger retried for an hour, or the cluster was down
    post(reply_event(message.contact.phone, "Oui", at=written))
    assert message_2_of(message) is not None
    message.refresh_from_db()
    assert message.replied_at == written


def test_a_reply_time_in_the_future_counts_as_its_arrival_time(post, fake_clock):
    message = sent_message_1()
    fake_clock.advance(24 * 3600 + 60)
    post(reply_event(message.contact.phone, "Oui", at=later(fake_clock.now(), days=3)))
    assert message_2_of(message) is None


def test_a_message_written_before_message_1_was_sent_is_not_a_reply_to_it(post, fake_clock):
    message = sent_message_1()
    post(reply_event(message.contact.phone, "Oui", at=later(fake_clock.now(), hours=-2)))
    assert message_2_of(message) is None
    assert "before message" in WebhookEvent.objects.get().reason
    # A few seconds of difference between Wassenger's clock and ours is not "before".
    post(reply_event(message.contact.phone, "Oui", at=later(fake_clock.now(), seconds=-30)))
    assert message_2_of(message) is not None


def test_a_reply_without_its_own_time_is_judged_by_its_arrival(post, fake_clock):
    message = sent_message_1()
    fake_clock.advance(24 * 3600 + 60)
    payload = reply_event(message.contact.phone, "Oui")
    for key in ("timestamp", "date"):
        del payload["data"][key]
    del payload["created"]
    post(payload)
    assert message_2_of(message) is None


def test_the_hourly_job_closes_unanswered_windows_and_a_later_reply_triggers_nothing(post, fake_clock):
    old, answered, recent = sent_message_1(), sent_message_1(), None
    post(reply_event(answered.contact.phone, "Oui"))
    fake_clock.advance(24 * 3600 + 1)
    recent = sent_message_1()
    assert windows_expire() == 1
    assert windows_expire() == 0
    old.refresh_from_db()
    assert old.window_expired_at == fake_clock.now()
    assert Message.objects.filter(window_expired_at__isnull=False).get() == old
    post(reply_event(old.contact.phone, "Oui, pardon pour le retard"))
    assert message_2_of(old) is None
    assert message_2_of(recent) is None


STOP_SPELLINGS = [
    "STOP",
    "stop",
    "Stop",
    " stop ",
    "STOP.",
    "Stop !",
    "stop!!!",
    "Arrêt",
    "ARRÊT",
    "arret",
    "Arrêt !",
    "UNSUBSCRIBE",
    "Désabonner",
    "stop 🛑",
    "\u2002STOP\u200b",
    "ＳＴＯＰ",
    "Stop svp",
]


@pytest.mark.parametrize("text", STOP_SPELLINGS)
def test_a_stop_word_however_typed_opts_out_and_cancels_without_message_2(post, fake_clock, text):
    message = sent_message_1()
    contact = message.contact
    other_campaign = make_campaign()
    other_campaign.status = CampaignStatus.SENDING
    other_campaign.save()
    waiting = make_message(campaign=other_campaign, contact=contact)
    post(reply_event(contact.phone, text))
    contact.refresh_from_db()
    waiting.refresh_from_db()
    assert contact.opted_out_at == fake_clock.now()
    assert waiting.status == MessageStatus.CANCELLED
    assert message_2_of(message) is None
    assert WebhookEvent.objects.get().reason.startswith("stop word")


@pytest.mark.parametrize("text", ["Don't stop", "stop by tomorrow?", "Oui", "Arrêtez-vous ici ?", ""])
def test_a_reply_merely_containing_a_stop_word_is_an_answer(post, text):
    message = sent_message_1()
    post(reply_event(message.contact.phone, text))
    message.contact.refresh_from_db()
    assert message.contact.opted_out_at is None
    assert message_2_of(message) is not None


def test_the_stop_words_are_a_setting(post, settings):
    settings.WEBHOOK_STOP_WORDS = ["BASTA"]
    message = sent_message_1()
    post(reply_event(message.contact.phone, "Basta!"))
    message.contact.refresh_from_db()
    assert message.contact.opted_out_at is not None


def test_fold_drops_case_accents_and_edge_punctuation_only():
    assert fold("  Désabonner ! ") == "desabonner"
    assert fold("STOP   SVP.") == "stop svp"
    assert fold("¿stop?") == "stop"
    assert fold("s.t.o.p") == "s.t.o.p"


def test_an_opted_out_contact_gets_no_message_2_for_a_later_answer(post):
    message = sent_message_1()
    post(reply_event(message.contact.phone, "STOP"))
    post(reply_event(message.contact.phone, "Finalement oui"))
    assert message_2_of(message) is None
    assert "opted out" in WebhookEvent.objects.order_by("id").last().reason


def test_a_reply_from_an_unknown_number_is_stored_and_does_nothing(post):
    sent_message_1()
    post(reply_event("+33699999999", "Oui"))
    event = WebhookEvent.objects.get()
    assert (event.status, event.reason) == (
        EventStatus.PROCESSED,
        "reply not placed: no contact has the number +33699999999",
    )
    assert not Message.objects.filter(kind=MessageKind.MESSAGE_2).exists()


def test_the_contact_is_found_from_the_whatsapp_id_when_from_number_is_missing(post):
    message = sent_message_1()
    payload = reply_event(message.contact.phone, "Oui")
    del payload["data"]["fromNumber"]
    post(payload)
    assert message_2_of(message) is not None


@pytest.mark.parametrize(
    "campaign_status, follows_up",
    [(CampaignStatus.SENDING, True), (CampaignStatus.PAUSED, True), (CampaignStatus.COMPLETED, False)],
)
def test_message_2_only_for_a_campaign_still_sending_or_paused(post, campaign_status, follows_up):
    message = sent_message_1()
    message.campaign.status = campaign_status
    message.campaign.save()
    post(reply_event(message.contact.phone, "Oui"))
    assert (message_2_of(message) is not None) is follows_up


def test_a_reply_answers_every_campaign_whose_message_1_is_in_its_window(post, inline_tasks):
    first = sent_message_1()
    second = sent_message_1(contact=first.contact)
    post(reply_event(first.contact.phone, "Oui"))
    assert message_2_of(first) is not None and message_2_of(second) is not None
    assert inline_tasks.devices == [first.device_id]  # one wake-up per device


def test_message_2_missing_a_variable_is_failed_with_the_reason_never_sent_blank(post):
    campaign = make_campaign(message_2_text="Merci {{ company }}")
    campaign.status = CampaignStatus.SENDING
    campaign.save()
    message = sent_message_1(campaign=campaign)
    post(reply_event(message.contact.phone, "Oui"))
    follow_up = message_2_of(message)
    assert follow_up.status == MessageStatus.FAILED
    assert "{{ company }}" in follow_up.last_error


def test_a_reply_to_a_message_1_not_sent_yet_triggers_nothing(post):
    message = make_message()
    message.campaign.status = CampaignStatus.SENDING
    message.campaign.save()
    post(reply_event(message.contact.phone, "Oui"))
    assert message_2_of(message) is None
    assert "no Message 1 sent" in WebhookEvent.objects.get().reason


# --- Wassenger's own shapes (tests/wassenger_shapes.py): who wrote, and in which chat ---------


def documented(example: dict, message, *, device_phone: str = "+33755500001") -> dict:
    """The example as Wassenger documents it, between `message`'s contact and our device,
    written now (only the numbers and times change: who sits in fromNumber does not)."""
    message.device.phone = device_phone
    message.device.save(update_fields=["phone"])
    spec_numbers = {
        shapes.SPEC_CONTACT_PHONE: message.contact.phone,
        shapes.SPEC_DEVICE["phone"]: device_phone,
    }
    wild_numbers = {
        shapes.WILD_CONTACT_PHONE: message.contact.phone,
        shapes.WILD_DEVICE["phone"]: device_phone,
    }
    return shapes.renumbered(example, {**spec_numbers, **wild_numbers}, at=clock.now())


@pytest.mark.parametrize(
    "example", [shapes.SPEC_IN_NEW, shapes.WILD_IN_NEW, shapes.LID_IN_NEW], ids=["spec", "wild", "lid"]
)
def test_a_reply_in_each_documented_shape_gets_message_2(post, fake_clock, example):
    message = sent_message_1()
    fake_clock.advance(60)
    post(documented(example, message))
    assert message_2_of(message).status == MessageStatus.PENDING
    assert WebhookEvent.objects.get().reason.startswith(f"reply to message {message.pk}")


def test_wassengers_documented_reply_is_never_taken_for_a_message_from_our_own_number(post, fake_clock):
    """SPEC's example names the device in fromNumber; a contact with that number (the
    operator's test phone, say) must not be taken for the one who wrote."""
    message = sent_message_1()
    ours = sent_message_1(contact=make_contact(phone="+33755500001"))
    fake_clock.advance(60)
    payload = documented(shapes.SPEC_IN_NEW, message)
    del payload["device"]  # only the Device rows say which number is ours
    post(payload)
    assert message_2_of(message) is not None and message_2_of(ours) is None


@pytest.mark.parametrize(
    ("change", "kind"),
    [
        ({}, "group"),
        (
            {"chat_id": "120363144038483540@newsletter", "chat_type": "channel", "meta": {"isGroup": False}},
            "channel",
        ),
        ({"chat_id": "status@broadcast", "chat_type": "chat", "meta": {"isGroup": False}}, "status"),
        (
            {"chat_id": "contact", "chat_type": "chat", "meta": {"isGroup": False, "isNotification": True}},
            "system",
        ),
    ],
)
def test_group_channel_status_and_system_messages_are_stored_and_never_replies(post, change, kind):
    message = sent_message_1()
    payload = documented(shapes.GROUP_IN_NEW, message)
    data = payload["data"]
    if "chat_id" in change:
        own_chat = f"{message.contact.phone[1:]}@c.us"
        data["chat"]["id"] = data["to"] = own_chat if change["chat_id"] == "contact" else change["chat_id"]
    data["chat"]["type"] = change.get("chat_type", data["chat"]["type"])
    data["meta"].update(change.get("meta", {}))
    data["chat"]["contact"] = {"phone": message.contact.phone}  # as close to a reply as it gets
    post(payload)
    event = WebhookEvent.objects.get()
    assert (event.status, event.reason) == (EventStatus.PROCESSED, f"{kind} message: stored, never a reply")
    assert event.payload == payload
    assert message_2_of(message) is None
    message.refresh_from_db()
    assert message.replied_at is None


def test_a_contact_known_only_by_its_lid_is_kept_with_the_reason(post):
    message = sent_message_1()
    payload = documented(shapes.LID_IN_NEW, message)
    del payload["data"]["chat"]["contact"]
    post(payload)
    event = WebhookEvent.objects.get()
    assert event.status == EventStatus.PROCESSED
    assert (
        event.reason
        == "reply not placed: WhatsApp names the sender only by 183807571451999@lid, with no phone number"
    )
    assert message_2_of(message) is None


def test_an_unplaced_reply_is_answered_once_its_contact_exists_and_it_is_reprocessed(post, fake_clock):
    campaign = sent_message_1().campaign
    post(reply_event("+33699999998", "Oui"))
    event = WebhookEvent.objects.get()
    assert event.reason.startswith("reply not placed:")
    message = sent_message_1(
        campaign=campaign,
        contact=make_contact(phone="+33699999998"),
        sent_at=later(fake_clock.now(), minutes=-5),
    )
    assert events_reprocess(event_ids=[event.pk]) == {EventStatus.PROCESSED: 1}
    assert message_2_of(message) is not None
