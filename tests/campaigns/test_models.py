import itertools
import json
from importlib import import_module

import pytest
from django.db import IntegrityError, connection, transaction

from campaigns.models import (
    CAMPAIGN_TRANSITIONS,
    Campaign,
    CampaignStatus,
    InvalidTransition,
)
from tests.factories import make_campaign, make_contact

pytestmark = pytest.mark.django_db

# Sorted: a set's order changes with the hash seed, and every test process must collect the same.
ALLOWED = [(a, b) for a, targets in CAMPAIGN_TRANSITIONS.items() for b in sorted(targets)]
REFUSED = [(a, b) for a, b in itertools.product(CampaignStatus, CampaignStatus) if (a, b) not in ALLOWED]


def test_contact_phone_is_stored_in_e164_whatever_was_typed():
    contact = make_contact(phone="06 12 34 56 78")
    contact.refresh_from_db()
    assert contact.phone == "+33612345678"


def test_the_same_phone_twice_is_rejected_by_the_database():
    make_contact(phone="+33612345678")
    with pytest.raises(IntegrityError):
        make_contact(phone="06 12 34 56 78")


def test_a_non_e164_phone_written_around_the_model_is_rejected_by_the_database():
    contact = make_contact()
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE campaigns_contact SET phone = '0612345678' WHERE id = %s", [contact.pk])


def test_campaign_without_message_1_text_or_template_is_rejected_by_the_database():
    with pytest.raises(IntegrityError):
        make_campaign(message_1_text="")


def test_campaign_with_a_template_and_no_text_is_allowed():
    campaign = make_campaign(
        message_1_text="", message_1_template_name="promo", message_1_template_language="fr"
    )
    assert campaign.pk


def test_an_unknown_campaign_status_is_rejected_by_the_database():
    campaign = make_campaign()
    with pytest.raises(IntegrityError), transaction.atomic():
        Campaign.objects.filter(pk=campaign.pk).update(status="exploded")


@pytest.mark.parametrize(("start", "target"), ALLOWED)
def test_every_allowed_transition_works(start, target):
    campaign = make_campaign()
    Campaign.objects.filter(pk=campaign.pk).update(status=start)
    campaign.refresh_from_db()
    campaign.transition_to(target)
    campaign.save()
    campaign.refresh_from_db()
    assert campaign.status == target


@pytest.mark.parametrize(("start", "target"), REFUSED)
def test_every_other_transition_raises_a_clear_error(start, target):
    campaign = make_campaign(name="Soldes")
    Campaign.objects.filter(pk=campaign.pk).update(status=start)
    campaign.refresh_from_db()
    with pytest.raises(InvalidTransition) as error:
        campaign.transition_to(target)
    assert f"'Soldes' cannot go from {start} to {target}" in str(error.value)
    assert campaign.status == start


def test_launch_and_finish_times_come_from_the_clock(fake_clock):
    campaign = make_campaign()
    campaign.transition_to(CampaignStatus.SENDING)
    assert campaign.launched_at == fake_clock.now()
    fake_clock.advance(3600)
    campaign.transition_to(CampaignStatus.COMPLETED)
    assert campaign.finished_at == fake_clock.now()
    assert campaign.is_final


def test_a_cancelled_campaign_is_final_and_a_completed_one_only_reopens_to_send_failures_again():
    assert CAMPAIGN_TRANSITIONS[CampaignStatus.COMPLETED] == {CampaignStatus.SENDING}
    assert CAMPAIGN_TRANSITIONS[CampaignStatus.CANCELLED] == set()
    assert connection.vendor == "postgresql"


def test_the_migration_to_text_fields_keeps_what_message_1_printed_for_older_values():
    """0009: values the API once took as any JSON become the text Message 1 rendered."""
    migration = import_module("campaigns.migrations.0009_contact_fields_are_texts").Migration
    convert = migration.operations[0].sql
    older = {"age": 42, "vip": True, "ratio": 1e-05, "none": None, "city": "Lyon", "tags": {"a": 1}}
    kept, listed = make_contact(fields={"city": "Lyon"}), make_contact()
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE campaigns_contact SET fields = %s::jsonb WHERE id = %s", [json.dumps(older), kept.pk]
        )
        cursor.execute("UPDATE campaigns_contact SET fields = '[1, 2]'::jsonb WHERE id = %s", [listed.pk])
        cursor.execute(convert)
    kept.refresh_from_db()
    listed.refresh_from_db()
    assert kept.fields == {
        "age": "42",
        "vip": "true",
        "ratio": "0.00001",
        "none": "",
        "city": "Lyon",
        "tags": '{"a": 1}',
    }
    assert listed.fields == {"fields": "[1, 2]"}
