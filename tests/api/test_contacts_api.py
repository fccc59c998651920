"""Contacts through the API: normalised phones, bulk upsert all or nothing, opt-out."""

import pytest

from campaigns.models import Contact
from messaging.models import MessageStatus
from tests.factories import make_category, make_contact, make_message

pytestmark = pytest.mark.django_db


def test_a_phone_is_stored_as_e164_and_a_bad_one_is_named_with_its_reason(staff):
    created = staff.post("/api/contacts/", {"phone": "06 12 34 56 78"}, format="json")
    assert (created.status_code, created.json()["phone"]) == (201, "+33612345678")

    refused = staff.post("/api/contacts/", {"phone": "12"}, format="json")
    assert refused.status_code == 400
    assert refused.json()["phone"] == ["'12' is not a usable phone number: too short."]
    duplicate = staff.post("/api/contacts/", {"phone": "+33 6 12 34 56 78"}, format="json")
    assert duplicate.json()["phone"] == ["+33612345678 is already a contact."]


def test_bulk_creates_and_updates_by_phone_and_adds_categories(staff):
    old, new = make_category(), make_category()
    existing = make_contact(phone="+33612345678", first_name="Old", categories=[old])
    items = [
        {"phone": "0612345678", "first_name": "New", "categories": [new.pk]},
        {"phone": "+33 6 99 99 99 99", "fields": {"city": "Lyon"}},
    ]
    response = staff.post("/api/contacts/bulk/", items, format="json")
    assert response.status_code == 200, response.json()
    assert (response.json()["created"], response.json()["updated"]) == (1, 1)
    existing.refresh_from_db()
    assert existing.first_name == "New"
    assert set(existing.categories.all()) == {old, new}
    assert Contact.objects.get(phone="+33699999999").fields == {"city": "Lyon"}


def test_bulk_with_one_invalid_item_writes_nothing_and_lists_errors_by_index(staff):
    items = [
        {"phone": "0611111111"},
        {"phone": "not a phone"},
        {"phone": "0622222222", "categories": [999999]},
        {"phone": "+33611111111"},
    ]
    response = staff.post("/api/contacts/bulk/", items, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid_items"
    assert [error["index"] for error in body["errors"]] == [1, 2, 3]
    assert "not a usable phone number" in body["errors"][0]["errors"]["phone"][0]
    assert "categories" in body["errors"][1]["errors"]
    assert body["errors"][2]["errors"]["phone"] == ["+33611111111 is also item 0."]
    assert Contact.objects.count() == 0


@pytest.mark.parametrize("body", [{}, [], "x", [{"phone": "0611111111"}] * 1001])
def test_bulk_refuses_anything_but_a_list_of_1_to_1000(staff, body):
    response = staff.post("/api/contacts/bulk/", body, format="json")
    assert (response.status_code, response.json()["code"]) == (400, "invalid_items")


def test_json_fields_refuse_what_postgresql_cannot_store_or_a_message_cannot_print(staff):
    for fields in ({"a": "nul\u0000"}, {"a": True}, {"a": [[[[[[["deep"]]]]]]]}, {"a": {"b": "c"}}):
        response = staff.post("/api/contacts/", {"phone": "0612345678", "fields": fields}, format="json")
        assert response.status_code == 400, fields
    assert Contact.objects.count() == 0


def test_a_number_in_the_fields_is_kept_as_its_text(staff):
    fields = {"age": 42, "big": 2**64}
    response = staff.post("/api/contacts/", {"phone": "0612345678", "fields": fields}, format="json")
    assert response.status_code == 201
    assert Contact.objects.get().fields == {"age": "42", "big": "18446744073709551616"}


def test_opt_out_marks_the_contact_and_cancels_its_pending_messages(staff, fake_clock):
    message = make_message()
    response = staff.post(f"/api/contacts/{message.contact_id}/opt-out/")
    assert response.status_code == 200
    assert response.json()["opted_out_at"] is not None
    message.refresh_from_db()
    assert message.status == MessageStatus.CANCELLED
    listed = staff.get("/api/contacts/", {"opted_out": "true"}).json()
    assert [row["id"] for row in listed["results"]] == [message.contact_id]


def test_pages_hold_50_by_default_and_page_size_is_capped_at_500(reader):
    for _ in range(3):
        make_contact()
    page = reader.get("/api/contacts/", {"page_size": 2}).json()
    assert (page["count"], len(page["results"]), page["next"] is not None) == (3, 2, True)
    assert len(reader.get("/api/contacts/", {"page_size": 100000}).json()["results"]) == 3
    from config.api import ApiPagination

    assert (ApiPagination.page_size, ApiPagination.max_page_size) == (50, 500)


@pytest.mark.parametrize("path", ["/api/contacts/", "/api/contacts/bulk/", "/api/categories/"])
def test_malformed_or_absurdly_nested_json_is_a_400_not_a_crash(staff, path):
    for body in ("{", "[" * 100_000 + "]" * 100_000, '{"phone": NaN}'):
        response = staff.generic("POST", path, body, content_type="application/json")
        assert response.status_code == 400, body[:20]
