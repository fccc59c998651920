import pytest
from django.db import IntegrityError, connection, transaction

from campaigns.models import Contact
from messaging.devices import device_ensure_default
from messaging.models import Device, Message, MessageKind, MessageStatus
from tests.factories import (
    first_device_id,
    make_campaign,
    make_contact,
    make_device,
    make_message,
    queue_message_1,
)

pytestmark = pytest.mark.django_db


def test_a_second_message_1_for_the_same_campaign_and_contact_is_rejected_by_the_database():
    message = make_message()
    with pytest.raises(IntegrityError):
        make_message(campaign=message.campaign, contact=message.contact)


def test_a_message_must_go_through_its_own_campaigns_device():
    """One foreign key, (campaign, device), checks at commit that both exist and belong
    together: no message can be sent from a device its campaign does not use."""
    campaign, other_device = make_campaign(), make_device()
    make_message(campaign=campaign, device_id=first_device_id(campaign))
    connection.check_constraints()  # the deferred checks, now: this one holds
    with pytest.raises(IntegrityError, match="message_campaign_device_fk"), transaction.atomic():
        make_message(campaign=campaign, device=other_device)
        connection.check_constraints()


def test_a_message_of_a_campaign_that_does_not_exist_is_refused():
    campaign = make_campaign()
    with pytest.raises(IntegrityError, match="message_campaign_device_fk"), transaction.atomic():
        Message.objects.create(
            campaign_id=campaign.pk + 1000,
            contact=make_contact(),
            device_id=first_device_id(campaign),
            kind="message_1",
        )
        connection.check_constraints()


def test_message_2_for_the_same_contact_is_a_different_message():
    message = make_message()
    follow_up = make_message(campaign=message.campaign, contact=message.contact, kind=MessageKind.MESSAGE_2)
    assert follow_up.reference != message.reference


def test_a_message_accepted_by_wassenger_must_have_its_sent_time():
    message = make_message()
    with pytest.raises(IntegrityError), transaction.atomic():
        Message.objects.filter(pk=message.pk).update(status=MessageStatus.SENT)


def test_a_set_based_insert_gets_a_unique_reference_and_pending_status_from_the_database():
    campaign = make_campaign()
    contacts = [make_contact(), make_contact()]
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO messaging_message (campaign_id, contact_id, device_id, kind, content)"
            " SELECT %s, id, %s, 'message_1', 'hi' FROM campaigns_contact WHERE id = ANY(%s)",
            [campaign.pk, first_device_id(campaign), [c.pk for c in contacts]],
        )
    rows = list(Message.objects.filter(campaign=campaign).values("reference", "status", "attempts"))
    assert len({row["reference"] for row in rows}) == 2
    assert {row["status"] for row in rows} == {MessageStatus.PENDING}


def test_there_is_exactly_one_default_device_and_ensuring_it_is_idempotent():
    first = device_ensure_default()
    assert device_ensure_default() == first
    assert Device.objects.filter(is_default=True).count() == 1
    with pytest.raises(IntegrityError), transaction.atomic():
        make_device(is_default=True)


def test_the_default_device_takes_the_configured_wassenger_id_only_when_it_has_none(settings):
    settings.WASSENGER_DEVICE_ID = ""
    device = device_ensure_default()
    device.wassenger_id = ""
    device.save(update_fields=["wassenger_id"])  # as after a first run on the sandbox
    settings.WASSENGER_DEVICE_ID = "5f0c0ffee0ddba11ab1e5eed"
    assert device_ensure_default().wassenger_id == "5f0c0ffee0ddba11ab1e5eed"

    Device.objects.filter(pk=device.pk).update(wassenger_id="0123456789abcdef01234567")  # typed in the admin
    assert device_ensure_default().wassenger_id == "0123456789abcdef01234567"


def test_a_new_device_takes_its_pacing_from_the_settings(settings):
    settings.DEVICE_GAP_SECONDS = 7.5
    device = make_device()
    assert (device.daily_limit, device.gap_seconds, device.batch_size, device.batch_pause_seconds) == (
        1000,
        7.5,
        25,
        300.0,
    )


def test_a_device_with_a_batch_of_zero_is_rejected_by_the_database():
    with pytest.raises(IntegrityError):
        make_device(batch_size=0)


def test_the_due_message_query_of_a_device_is_an_index_scan_in_claim_order():
    """With a realistic table (thousands of pending rows over two devices, fresh statistics)
    the sender's question, asked of each sending campaign of the device, is answered from the
    partial index, already in claim order."""
    devices = [device_ensure_default(), make_device()]
    campaigns = [make_campaign(device=device) for device in devices]
    Contact.objects.bulk_create(Contact(phone=f"+3366{n:07d}") for n in range(1, 1501))
    for campaign in campaigns:
        queue_message_1(campaign=campaign, contacts=Contact.objects.filter(phone__startswith="+3366"))
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE messaging_message")
        cursor.execute(
            "EXPLAIN SELECT id FROM messaging_message WHERE campaign_id = %s AND device_id = %s"
            " AND status = 'pending' ORDER BY kind DESC, id LIMIT 1",
            [campaigns[0].pk, devices[0].pk],
        )
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "message_due_by_campaign" in plan and "Sort" not in plan, plan


def test_the_configured_id_is_not_copied_onto_the_default_device_when_another_device_has_it(settings):
    settings.WASSENGER_DEVICE_ID = ""
    default = device_ensure_default()
    Device.objects.filter(pk=default.pk).update(wassenger_id="")
    make_device(label="Mine", wassenger_id="5f0c0ffee0ddba11ab1e5eed")  # added in the admin
    settings.WASSENGER_DEVICE_ID = "5f0c0ffee0ddba11ab1e5eed"
    assert device_ensure_default().wassenger_id == ""  # and no IntegrityError: migrate runs this
