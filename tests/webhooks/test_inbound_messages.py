"""Inbound messages as rows: each one written once, with what Relance did with it, and the rows
of events stored before rows existed backfilled by a migration, once."""

import pytest
from django.apps import apps
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from campaigns.models import CampaignStatus
from messaging.models import Message, MessageKind
from tests import wassenger_shapes as shapes
from tests.factories import make_contact
from tests.webhooks.conftest import message_2_of, reply_event, sent_message_1
from tests.webhooks.test_replies import documented
from webhooks.inbound import inbound_backfill, outcome_from_reason
from webhooks.models import InboundMessage, InboundOutcome

pytestmark = pytest.mark.django_db


def test_a_reply_is_a_row_with_its_contact_text_campaign_and_outcome(post, fake_clock):
    message = sent_message_1()
    fake_clock.advance(600)
    post(reply_event(message.contact.phone, "Oui, je veux bien\nAppelez-moi demain"))
    row = InboundMessage.objects.get()
    assert (row.contact, row.campaign, row.message_1, row.device_id) == (
        message.contact,
        message.campaign,
        message,
        message.device_id,
    )
    assert (row.text, row.outcome, row.written_at) == (
        "Oui, je veux bien\nAppelez-moi demain",
        InboundOutcome.MESSAGE_2,
        fake_clock.now(),
    )
    assert row.whatsapp_id == row.event.message_id and row.media_kind == ""


def test_the_same_webhook_replayed_three_times_gives_one_row(post):
    message = sent_message_1()
    payload = reply_event(message.contact.phone, "Oui")
    for _ in range(3):
        post(payload)
    assert InboundMessage.objects.count() == 1
    assert Message.objects.filter(kind=MessageKind.MESSAGE_2).count() == 1


def test_a_late_reply_and_one_from_an_unknown_number_are_listed_with_their_outcome(post, fake_clock):
    message = sent_message_1()
    fake_clock.advance(25 * 3600)
    post(reply_event(message.contact.phone, "Désolée, je rentre de vacances"))
    post(reply_event("+33699999999", "Qui êtes-vous ?"))
    late, unknown = InboundMessage.objects.order_by("pk")
    assert (late.outcome, late.campaign_id, late.text) == (
        InboundOutcome.LATE,
        message.campaign_id,
        "Désolée, je rentre de vacances",
    )
    assert (unknown.outcome, unknown.contact, unknown.phone) == (
        InboundOutcome.UNKNOWN_SENDER,
        None,
        "+33699999999",
    )
    assert message_2_of(message) is None


@pytest.mark.parametrize(
    "text, setup, outcome",
    [
        ("STOP", None, InboundOutcome.OPT_OUT),
        ("Oui", "answered", InboundOutcome.ALREADY_ANSWERED),
        ("Oui", "paused", InboundOutcome.CAMPAIGN_PAUSED),
        ("Oui", "completed", InboundOutcome.CAMPAIGN_OVER),
    ],
)
def test_each_outcome_is_recorded(post, fake_clock, text, setup, outcome):
    message = sent_message_1()
    if setup == "answered":
        post(reply_event(message.contact.phone, "Premier"))
        fake_clock.advance(60)
    elif setup in ("paused", "completed"):
        message.campaign.status = CampaignStatus(setup)
        message.campaign.save(update_fields=["status"])
    post(reply_event(message.contact.phone, text))
    row = InboundMessage.objects.order_by("pk").last()
    assert row.outcome == outcome
    # What the backfill reads in the event's reason says the same (a reason does not say the
    # campaign was paused then: the backfill lists such a reply as having triggered Message 2).
    backfilled = InboundOutcome.MESSAGE_2 if setup == "paused" else outcome
    assert outcome_from_reason(row.event.reason)[0] == backfilled


def test_a_group_message_is_a_row_tied_to_no_contact(post):
    message = sent_message_1()
    post(documented(shapes.GROUP_IN_NEW, message))
    row = InboundMessage.objects.get()
    assert (row.outcome, row.contact) == (InboundOutcome.GROUP, None)


def test_a_media_message_records_its_kind_and_caption(post):
    message = sent_message_1()
    payload = reply_event(message.contact.phone, "")
    payload["data"].update(type="image", media={"caption": "Voici le devis", "extension": "jpg"})
    del payload["data"]["body"]
    post(payload)
    row = InboundMessage.objects.get()
    assert (row.media_kind, row.text) == ("image", "Voici le devis")


# --- The backfill -------------------------------------------------------------------------------


def _events_stored_before_rows(post, fake_clock) -> dict:
    """Process a few inbound events, then forget their rows (as before the migration)."""
    answered = sent_message_1(contact=make_contact(first_name="Chloé"))
    late = sent_message_1()
    post(reply_event(answered.contact.phone, "Oui, dites-m'en plus"))
    fake_clock.advance(25 * 3600)
    post(reply_event(late.contact.phone, "Trop tard ?"))
    post(reply_event("+33699999997", "Bonjour"))
    expected = {
        row.event_id: (
            row.outcome,
            row.contact_id,
            row.message_1_id,
            row.campaign_id,
            row.text,
            row.written_at,
        )
        for row in InboundMessage.objects.all()
    }
    InboundMessage.objects.all().delete()
    return expected


def _rows() -> dict:
    return {
        row.event_id: (
            row.outcome,
            row.contact_id,
            row.message_1_id,
            row.campaign_id,
            row.text,
            row.written_at,
        )
        for row in InboundMessage.objects.all()
    }


def test_the_backfill_turns_stored_events_into_the_rows_processing_writes_once(post, fake_clock):
    expected = _events_stored_before_rows(post, fake_clock)
    assert inbound_backfill(apps) == 3
    assert _rows() == expected
    assert inbound_backfill(apps) == 0  # run again: nothing more
    assert _rows() == expected


def test_the_migration_backfills_stored_events_exactly_once(post, fake_clock):
    expected = _events_stored_before_rows(post, fake_clock)
    target = [("webhooks", "0005_backfill_inbound_messages")]
    # Unapplying the later migrations alters the reply table, which PostgreSQL refuses while
    # the rows written above still have deferred key checks pending: run them now.
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    for _ in range(2):  # unapplied and applied again: the rows are not written twice
        executor = MigrationExecutor(connection)
        executor.migrate([("webhooks", "0004_inbound_messages")])
        executor.loader.build_graph()
        executor.migrate(target)
        assert _rows() == expected
