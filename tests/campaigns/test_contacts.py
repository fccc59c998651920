"""The contact rules' one home (campaigns/contacts.py), as the import, the API, the admin and
webhook processing all reach it."""

import io

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from campaigns.contacts import ContactRow, contact_opt_out, contact_whatsapp_record, contacts_upsert
from campaigns.importing import contacts_import
from campaigns.models import Contact, WhatsAppStatus
from messaging.devices import device_ensure_default
from messaging.models import CANCELLED_OPTED_OUT, MessageStatus
from tests.factories import make_category, make_contact, make_message, make_sending_campaign

pytestmark = pytest.mark.django_db


@pytest.fixture
def superuser(django_user_model):
    return django_user_model.objects.create_superuser("operator", "op@example.com", None)


def test_opt_out_cancels_pending_messages_at_once_and_keeps_the_first_date(fake_clock):
    campaign = make_sending_campaign(device=device_ensure_default())
    contact = make_contact()
    pending = make_message(campaign=campaign, contact=contact)
    sent = make_message(campaign=make_sending_campaign(device=campaign.devices.get()), contact=contact)
    sent.status, sent.sent_at = MessageStatus.SENT, fake_clock.now()
    sent.save()
    assert contact_opt_out(contact=contact) == 1
    first = Contact.objects.get(pk=contact.pk).opted_out_at
    fake_clock.advance(60)
    assert contact_opt_out(contact=contact) == 0
    assert Contact.objects.get(pk=contact.pk).opted_out_at == first
    pending.refresh_from_db()
    sent.refresh_from_db()
    assert (pending.status, pending.last_error, sent.status) == (
        MessageStatus.CANCELLED,
        CANCELLED_OPTED_OUT,
        MessageStatus.SENT,
    )


def test_the_admin_opts_out_through_the_action_which_cancels_at_once(client, superuser):
    client.force_login(superuser)
    campaign = make_sending_campaign(device=device_ensure_default())
    contact = make_contact()
    message = make_message(campaign=campaign, contact=contact)
    changelist = reverse("admin:campaigns_contact_changelist")
    response = client.post(changelist, {"action": "opt_out", "_selected_action": [contact.pk]}, follow=True)
    shown = [str(m) for m in response.context["messages"]]
    assert shown == ["1 contact opted out, 1 pending messages cancelled."]
    message.refresh_from_db()
    assert message.status == MessageStatus.CANCELLED
    change = client.get(reverse("admin:campaigns_contact_change", args=[contact.pk])).content.decode()
    assert 'name="opted_out_at' not in change  # the date is shown, not edited


def test_upsert_merges_an_empty_value_never_erases_and_categories_add_up():
    first, second = make_category(), make_category()
    contact = make_contact(phone="+33612345678", name="Martin", first_name="Léa", fields={"city": "Lyon"})
    contact.categories.add(first)
    row = ContactRow("+33612345678", name="", first_name="Lea", fields={"city": "", "zip": "69001"})
    [(contact_id, phone, created)] = contacts_upsert(rows=[row], category_ids=[second.pk])
    contact.refresh_from_db()
    assert (contact_id, phone, created) == (contact.pk, "+33612345678", False)
    assert (contact.name, contact.first_name) == ("Martin", "Lea")
    assert contact.fields == {"city": "Lyon", "zip": "69001"}
    assert set(contact.categories.all()) == {first, second}


def test_the_import_and_the_api_bulk_action_give_the_same_contact(superuser):
    """One upsert behind both: the same input over the same contact gives the same row."""

    def stored(phone):
        contact = Contact.objects.get(phone=phone)
        return contact.name, contact.first_name, contact.fields

    for phone in ("+33611111111", "+33622222222"):
        make_contact(phone=phone, name="Martin", first_name="Léa", fields={"city": "Lyon"})
    csv = "téléphone,nom,prénom,zip\n+33611111111,,Lea,69001\n".encode()
    contacts_import(file=io.BytesIO(csv), category="Imported")
    api = APIClient()
    api.force_authenticate(superuser)
    item = {"phone": "+33622222222", "name": "", "first_name": "Lea", "fields": {"zip": "69001"}}
    assert api.post("/api/contacts/bulk/", [item], format="json").status_code == 200
    assert (
        stored("+33611111111")
        == stored("+33622222222")
        == ("Martin", "Lea", {"city": "Lyon", "zip": "69001"})
    )


def test_a_number_check_and_a_refused_send_record_whatsapp_status_the_same_way(fake_clock):
    contact = make_contact()
    assert contact_whatsapp_record(contact_id=contact.pk, on_whatsapp=False) == WhatsAppStatus.INVALID
    contact.refresh_from_db()
    assert (contact.whatsapp_status, contact.whatsapp_checked_at) == (
        WhatsAppStatus.INVALID,
        fake_clock.now(),
    )
