"""Launch: who gets Message 1, what it says, and when a launch is refused."""

from datetime import timedelta
from unittest import mock

import pytest
from django.db import IntegrityError, transaction
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from campaigns.launch import campaign_launch, launch_preview
from campaigns.launch_sql import message_1_insert
from campaigns.models import CampaignStatus, Category, Contact, WhatsAppStatus
from campaigns.refusals import (
    AlreadyLaunched,
    DeviceCannotSend,
    MissingVariables,
    NoRecipients,
    QuotaExceeded,
    TemplateNotPersonalisable,
    UnknownVariables,
)
from campaigns.rendering import render_for_contact
from messaging import pacing
from messaging.claims import device_policy, device_snapshot, device_state
from messaging.models import DeviceDay, Message, MessageKind, MessageStatus
from tests.factories import (
    first_device_id,
    make_campaign,
    make_category,
    make_contact,
    make_device,
    make_phone,
)

pytestmark = pytest.mark.django_db

NO_HEALTH_CHECK = hypothesis_settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def message_1s(campaign) -> dict[int, str]:
    """{contact id: content} of the campaign's Message 1 rows."""
    rows = Message.objects.filter(campaign=campaign, kind=MessageKind.MESSAGE_1)
    return dict(rows.values_list("contact_id", "content"))


def test_launch_sends_one_message_1_to_each_distinct_eligible_contact(fake_clock, admin_user):
    first, second = make_category(), make_category()
    both = make_contact(first_name="Léa", categories=[first, second])
    one = make_contact(first_name="Noé", categories=[second])
    make_contact(categories=[first], opted_out_at=fake_clock.now())
    make_contact(categories=[second], whatsapp_status=WhatsAppStatus.INVALID)
    make_contact(categories=[make_category()])  # not in the campaign's categories
    campaign = make_campaign(categories=[first, second], message_1_text="Bonjour {{ first_name }}")

    result = campaign_launch(campaign=campaign, by=admin_user)

    assert message_1s(campaign) == {both.pk: "Bonjour Léa", one.pk: "Bonjour Noé"}
    assert result.messages_created == 2
    rows = Message.objects.filter(campaign=campaign)
    assert set(rows.values_list("status", "device_id", "next_attempt_at")) == {
        (MessageStatus.PENDING, first_device_id(campaign), fake_clock.now())
    }
    campaign.refresh_from_db()
    assert (campaign.status, campaign.launched_at, campaign.launched_by) == (
        CampaignStatus.SENDING,
        fake_clock.now(),
        admin_user,
    )


@given(
    contacts=st.lists(
        st.tuples(st.sets(st.integers(0, 3), max_size=4), st.booleans(), st.booleans()), max_size=12
    ),
    chosen=st.sets(st.integers(0, 3), min_size=1),
)
@NO_HEALTH_CHECK
def test_every_eligible_contact_gets_exactly_one_message_1_whatever_the_memberships(
    fake_clock, contacts, chosen
):
    """contacts: (categories, opted out, invalid) for each; chosen: the campaign's categories."""
    with transaction.atomic():
        categories = [make_category() for _ in range(4)]
        ids = _bulk_contacts(contacts, categories, fake_clock.now())
        expected = {
            contact_id
            for contact_id, (member_of, opted_out, invalid) in zip(ids, contacts, strict=True)
            if member_of & chosen and not opted_out and not invalid
        }
        campaign = make_campaign(categories=[categories[i] for i in chosen])
        if expected:
            campaign_launch(campaign=campaign)
        else:
            with pytest.raises(NoRecipients):
                campaign_launch(campaign=campaign)
        rows = Message.objects.filter(campaign=campaign).values_list("contact_id", flat=True)
        assert sorted(rows) == sorted(expected)
        transaction.set_rollback(True)


def _bulk_contacts(specs, categories, now) -> list[int]:
    created = Contact.objects.bulk_create(
        Contact(
            phone=make_phone(),
            first_name="Camille",
            opted_out_at=now if opted_out else None,
            whatsapp_status=WhatsAppStatus.INVALID if invalid else WhatsAppStatus.VALID,
        )
        for _, opted_out, invalid in specs
    )
    Membership = Contact.categories.through
    Membership.objects.bulk_create(
        Membership(contact_id=contact.pk, category_id=categories[index].pk)
        for contact, (member_of, _, _) in zip(created, specs, strict=True)
        for index in member_of
    )
    return [contact.pk for contact in created]


def test_a_repeated_insert_adds_nothing(fake_clock):
    category = make_category()
    make_contact(categories=[category])
    campaign = make_campaign(categories=[category])
    now = fake_clock.now()
    assert message_1_insert(campaign=campaign, start=now, now=now) == 1
    assert message_1_insert(campaign=campaign, start=now, now=now) == 0
    assert Message.objects.filter(campaign=campaign).count() == 1


def test_launch_starts_a_sender_for_the_device_once_committed(fake_clock, django_capture_on_commit_callbacks):
    category = make_category()
    make_contact(categories=[category])
    campaign = make_campaign(categories=[category])
    with mock.patch("messaging.dispatch.senders_wake") as senders_wake:
        with django_capture_on_commit_callbacks(execute=True):
            campaign_launch(campaign=campaign)
    senders_wake.assert_called_once_with(first_device_id(campaign))


def test_a_second_launch_is_refused_and_changes_nothing(fake_clock):
    category = make_category()
    make_contact(categories=[category])
    campaign = make_campaign(categories=[category])
    campaign_launch(campaign=campaign)
    make_contact(categories=[category])
    with pytest.raises(AlreadyLaunched) as refused:
        campaign_launch(campaign=campaign)
    assert refused.value.code == "already_launched"
    assert "already launched" in refused.value.message
    assert Message.objects.filter(campaign=campaign).count() == 1


def test_a_campaign_nobody_can_receive_is_refused_and_says_why(fake_clock):
    empty = make_campaign(categories=[make_category()])
    with pytest.raises(NoRecipients, match="have no contacts"):
        campaign_launch(campaign=empty)
    category = make_category()
    make_contact(categories=[category], opted_out_at=fake_clock.now())
    make_contact(categories=[category], whatsapp_status=WhatsAppStatus.INVALID)
    with pytest.raises(NoRecipients, match="None of the 2 contacts.*1 opted out, 1 invalid") as refused:
        campaign_launch(campaign=make_campaign(categories=[category]))
    assert (refused.value.code, refused.value.http_status) == ("no_recipients", 400)
    assert not Message.objects.exists()


# --- Personalisation ---------------------------------------------------------------------------


def test_message_1_uses_names_own_fields_and_fallbacks(fake_clock):
    category = make_category()
    lea = make_contact(first_name="Léa", name="Martin", fields={"ville": "Lyon"}, categories=[category])
    anon = make_contact(first_name="", fields={"first_name": "Sam"}, categories=[category])
    bare = make_contact(first_name="", categories=[category])
    campaign = make_campaign(
        categories=[category],
        message_1_text="Bonjour {{ first_name }}{{name}} ({{ ville }}) 100%",
        variable_fallbacks={"first_name": "à vous", "name": "", "ville": "chez vous"},
    )
    campaign_launch(campaign=campaign)
    assert message_1s(campaign) == {
        lea.pk: "Bonjour LéaMartin (Lyon) 100%",
        anon.pk: "Bonjour Sam (chez vous) 100%",
        bare.pk: "Bonjour à vous (chez vous) 100%",
    }


TEXT = st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00{}"), max_size=8)


@given(before=TEXT, first_name=TEXT, name=TEXT, own_first_name=TEXT, ville=TEXT, fallback=TEXT, after=TEXT)
@NO_HEALTH_CHECK
def test_the_database_renders_exactly_as_the_python_renderer(
    fake_clock, before, first_name, name, own_first_name, ville, fallback, after
):
    variables = "{{ first_name }} {{name}}{{ ville }} {{ phone }}{{Code postal}}"
    text = f"{before}{variables}{after}"
    fallbacks = {"first_name": fallback, "name": fallback, "ville": fallback, "Code postal": fallback}
    with transaction.atomic():
        category = make_category()
        fields = {"first_name": own_first_name, "ville": ville, "other": "x", "Code postal": ville}
        contacts = [
            make_contact(first_name=first_name, name=name, fields=fields, categories=[category]),
            make_contact(first_name="Léa", name="Martin", fields={"ville": "Lyon"}, categories=[category]),
        ]
        campaign = make_campaign(categories=[category], message_1_text=text, variable_fallbacks=fallbacks)
        campaign_launch(campaign=campaign)
        expected = {contact.pk: render_for_contact(text, contact, fallbacks) for contact in contacts}
        assert message_1s(campaign) == expected
        transaction.set_rollback(True)


def test_a_variable_some_recipients_lack_is_refused_with_the_count_until_it_has_a_fallback(fake_clock):
    category = make_category()
    make_contact(first_name="Léa", fields={"ville": "Lyon"}, categories=[category])
    make_contact(first_name="", categories=[category])
    make_contact(first_name="", categories=[category])
    campaign = make_campaign(categories=[category], message_1_text="Bonjour {{ first_name }} de {{ ville }}")
    with pytest.raises(MissingVariables) as refused:
        campaign_launch(campaign=campaign)
    assert refused.value.missing == {"first_name": 2, "ville": 2}
    assert "2 recipients have no {{ first_name }}; 2 recipients have no {{ ville }}" in refused.value.message
    assert "fallback" in refused.value.message
    campaign.variable_fallbacks = {"first_name": "à vous", "ville": "votre ville"}
    campaign.save()
    assert campaign_launch(campaign=campaign).messages_created == 3


def test_message_2_variables_are_checked_at_launch_too(fake_clock):
    category = make_category()
    make_contact(first_name="", categories=[category])
    campaign = make_campaign(
        categories=[category], message_1_text="Bonjour", message_2_text="Merci {{first_name}}"
    )
    with pytest.raises(MissingVariables, match="1 recipient has no {{ first_name }}"):
        campaign_launch(campaign=campaign)


def test_a_variable_no_recipient_has_is_an_error_naming_it_unless_it_has_a_fallback(fake_clock):
    category = make_category()
    make_contact(fields={"ville": "Lyon"}, categories=[category])
    campaign = make_campaign(categories=[category], message_1_text="Bonjour {{ first_name }} de {{ vile }}")
    with pytest.raises(UnknownVariables, match=r"No recipient has the variable \{\{ vile \}\}") as refused:
        campaign_launch(campaign=campaign)
    assert (refused.value.variables, refused.value.code) == (["vile"], "unknown_variable")
    assert not Message.objects.exists()
    campaign.variable_fallbacks = {"vile": "chez vous"}
    campaign.save()
    campaign_launch(campaign=campaign)
    assert list(message_1s(campaign).values()) == ["Bonjour Camille de chez vous"]


@pytest.mark.parametrize("kind", ["message_1_text", "message_2_text"])
def test_the_insert_itself_refuses_a_message_with_an_unresolved_variable(fake_clock, kind):
    """The last guard, should a contact change between a preview and the launch."""
    category = make_category()
    make_contact(first_name="Léa", categories=[category])
    make_contact(first_name="", categories=[category])
    campaign = make_campaign(categories=[category], **{kind: "Bonjour {{ first_name }}"})
    now = fake_clock.now()
    with pytest.raises(IntegrityError, match="content"), transaction.atomic():
        message_1_insert(campaign=campaign, start=now, now=now)
    assert not Message.objects.exists()


def test_a_template_campaign_creates_empty_contents_and_refuses_personalised_variables(fake_clock):
    category = make_category()
    make_contact(categories=[category])
    template = {
        "message_1_text": "",
        "message_1_template_name": "welcome",
        "message_1_template_language": "fr",
    }
    personalised = make_campaign(
        categories=[category], message_1_template_variables=["{{ first_name }}"], **template
    )
    with pytest.raises(TemplateNotPersonalisable, match="{{ first_name }}"):
        campaign_launch(campaign=personalised)
    fixed = make_campaign(categories=[category], message_1_template_variables=["Relance"], **template)
    campaign_launch(campaign=fixed)
    assert list(message_1s(fixed).values()) == [""]


# --- Quota and finish time -------------------------------------------------------------------------


@pytest.fixture
def small_device(settings, fake_clock):
    """9 Message 1 a day (10, one held back for Message 2), 4 already sent today."""
    settings.MESSAGE_2_RESERVE_SHARE = 0.1
    device = make_device(daily_limit=10, gap_seconds=25, batch_size=25, batch_pause_seconds=300)
    DeviceDay.objects.create(device=device, day=fake_clock.now().date(), message_1_count=4)
    return device


def audience_of(size: int) -> Category:
    category = make_category()
    for _ in range(size):
        make_contact(categories=[category])
    return category


def test_a_campaign_larger_than_todays_quota_is_refused_with_the_numbers(fake_clock, small_device):
    campaign = make_campaign(device=small_device, categories=[audience_of(7)])
    with pytest.raises(QuotaExceeded) as refused:
        campaign_launch(campaign=campaign)
    now = fake_clock.now()
    device = device_snapshot(small_device.pk, now)
    expected_finish = pacing.pacing_estimate_finish(
        policy=device_policy(device), state=device_state(device, now), now=now, message_1=7
    )
    error = refused.value
    assert expected_finish.isoformat() == "2026-03-30T00:00:25+00:00"  # 5 today, 2 after midnight
    assert (error.recipients, error.remaining_today, error.days_needed) == (7, 5, 2)
    assert error.estimated_finish == expected_finish
    assert (error.code, error.http_status) == ("quota_exceeded", 429)
    assert error.message == (
        "The campaign has 7 recipients but only 5 Message 1 can still be sent on 2026-03-29 "
        "(9 a day on this device, the follow-up reserve set aside; 0 already queued by other "
        "campaigns). It needs 2 days and would finish around 2026-03-30 00:00 UTC. "
        "Accept sending over several days to launch it anyway."
    )
    assert error.as_dict()["estimated_finish"] == "2026-03-30T00:00:25+00:00"
    assert not Message.objects.exists()


def test_accepting_several_days_launches_it_with_the_same_estimate(fake_clock, small_device):
    campaign = make_campaign(device=small_device, categories=[audience_of(7)])
    result = campaign_launch(campaign=campaign, allow_multi_day=True)
    assert result.messages_created == 7
    assert (result.pace.days_needed, result.pace.estimated_finish.isoformat()) == (
        2,
        "2026-03-30T00:00:25+00:00",
    )
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.SENDING


def test_messages_queued_by_other_campaigns_count_against_todays_room(fake_clock, small_device):
    campaign_launch(campaign=make_campaign(device=small_device, categories=[audience_of(3)]))
    second = make_campaign(device=small_device, categories=[audience_of(3)])
    with pytest.raises(QuotaExceeded, match="only 2 Message 1 .* 3 already queued") as refused:
        campaign_launch(campaign=second)
    assert refused.value.remaining_today == 2


def test_a_campaign_scheduled_for_tomorrow_uses_tomorrows_quota(fake_clock, small_device):
    tomorrow = fake_clock.now() + timedelta(days=1)
    campaign = make_campaign(device=small_device, categories=[audience_of(7)], starts_at=tomorrow)
    result = campaign_launch(campaign=campaign)
    assert (result.pace.remaining_today, result.pace.days_needed) == (9, 1)
    assert result.pace.estimated_finish == tomorrow + timedelta(seconds=6 * 25)


def test_a_device_that_may_send_no_message_1_refuses_every_launch(fake_clock):
    campaign = make_campaign(device=make_device(daily_limit=0), categories=[audience_of(1)])
    with pytest.raises(DeviceCannotSend, match="may send no Message 1 at all") as refused:
        campaign_launch(campaign=campaign, allow_multi_day=True)
    assert refused.value.as_dict() == {"code": "device_cannot_send", "detail": refused.value.message}
    assert not Message.objects.exists()


def test_the_preview_explains_who_is_skipped_and_shows_a_real_recipients_messages(fake_clock):
    first, second = make_category(), make_category()
    make_contact(first_name="Léa", name="Martin", phone="+33612345678", categories=[first, second])
    make_contact(first_name="", categories=[first])
    make_contact(categories=[first, second], opted_out_at=fake_clock.now())
    make_contact(categories=[second], whatsapp_status=WhatsAppStatus.INVALID)
    campaign = make_campaign(
        categories=[first, second],
        message_1_text="Bonjour {{ first_name }}",
        message_2_text="Merci {{ name }}",
    )
    preview = launch_preview(campaign=campaign)
    assert (preview.recipients, preview.duplicates, preview.opted_out, preview.invalid) == (2, 2, 1, 1)
    assert [(v.name, v.missing, v.fallback) for v in preview.variables] == [
        ("first_name", 1, None),
        ("name", 1, None),
    ]
    assert preview.sample.contact == "Léa Martin (+33612345678)"
    assert (preview.sample.message_1, preview.sample.message_2) == ("Bonjour Léa", "Merci Martin")
    assert (preview.pace.remaining_today, preview.pace.days_needed, preview.pace.estimated_finish) == (
        900,
        1,
        fake_clock.now() + timedelta(seconds=25),
    )
    assert [type(r) for r in preview.refusals()] == [MissingVariables]
