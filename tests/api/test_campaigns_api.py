"""A CRM's path through the API: category, contacts, campaign, launch, sends, stats; refusals.

The launch path runs end to end against the real sandbox process on loopback, with the real
sender; the sandbox's own record says what was "sent".
"""

import pytest

from messaging.models import DeviceDay, MessageStatus
from messaging.sending import sender_run
from tests.factories import make_campaign, make_category, make_contact, make_device

pytestmark = pytest.mark.django_db


def _create_campaign(staff, device, contacts: int) -> dict:
    category = staff.post("/api/categories/", {"name": "Clients"}, format="json").json()
    people = [
        {"phone": f"06 10 00 00 {i:02d}", "first_name": f"P{i}", "categories": [category["id"]]}
        for i in range(contacts)
    ]
    assert staff.post("/api/contacts/bulk/", people, format="json").status_code == 200
    body = {
        "name": "Spring",
        "devices": [device.pk],
        "categories": [category["id"]],
        "message_1_text": "Bonjour {{ first_name }}",
        "message_2_text": "Merci",
    }
    response = staff.post("/api/campaigns/", body, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["status"] == "draft"
    return response.json()


def test_a_campaign_built_and_launched_through_the_api_sends_to_every_contact(staff, fake_clock, sandbox):
    device = make_device(gap_seconds=25, batch_size=25, batch_pause_seconds=300, daily_limit=1000)
    campaign = _create_campaign(staff, device, contacts=3)

    response = staff.post(f"/api/campaigns/{campaign['id']}/launch/", {}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["messages_created"] == 3
    assert response.json()["campaign"]["status"] == "sending"
    messages = staff.get("/api/messages/", {"campaign": campaign["id"], "status": "pending"}).json()
    assert messages["count"] == 3
    assert sorted(m["content"] for m in messages["results"]) == ["Bonjour P0", "Bonjour P1", "Bonjour P2"]

    sender_run(device_id=device.pk)
    received = sorted(m["phone"] for m in sandbox.messages())
    assert received == ["+33610000000", "+33610000001", "+33610000002"]
    sent = staff.get("/api/messages/", {"campaign": campaign["id"], "status": "sent", "kind": "message_1"})
    assert sent.json()["count"] == 3
    stats = staff.get(f"/api/campaigns/{campaign['id']}/stats/").json()
    assert stats["messages"] == 3
    assert stats["by_kind"]["message_1"][MessageStatus.SENT] == 3
    assert stats["preview"]["recipients"] == 3


def test_a_launch_over_the_quota_answers_429_with_the_facts_and_creates_nothing(staff, fake_clock):
    device = make_device(daily_limit=20)  # 18 Message 1 a day once the follow-up reserve is set aside
    campaign = _create_campaign(staff, device, contacts=30)

    response = staff.post(
        f"/api/campaigns/{campaign['id']}/launch/", {"allow_multi_day": False}, format="json"
    )
    assert response.status_code == 429
    body = response.json()
    assert body["code"] == "quota_exceeded"
    assert body["remaining_today"] == 18
    assert body["days_needed"] == 2
    assert body["recipients"] == 30
    assert body["estimated_finish"].startswith("2026-03-30")
    assert "30 recipients" in body["detail"]
    assert staff.get("/api/messages/", {"campaign": campaign["id"]}).json()["count"] == 0

    accepted = staff.post(
        f"/api/campaigns/{campaign['id']}/launch/", {"allow_multi_day": True}, format="json"
    )
    assert accepted.status_code == 200
    assert (accepted.json()["messages_created"], accepted.json()["days_needed"]) == (30, 2)


def test_other_refusals_answer_their_status_with_a_code_and_a_message(staff):
    empty = make_campaign(categories=[make_category()])
    response = staff.post(f"/api/campaigns/{empty.pk}/launch/", {}, format="json")
    assert (response.status_code, response.json()["code"]) == (400, "no_recipients")

    response = staff.post(f"/api/campaigns/{empty.pk}/pause/")
    assert (response.status_code, response.json()["code"]) == (409, "invalid_status")
    assert "cannot be paused" in response.json()["detail"]


def test_a_launched_campaign_keeps_what_its_messages_were_built_from_and_cannot_be_deleted(staff):
    # The admin's answer, kept: name, Message 2 and fallbacks stay editable after launch
    # (Message 2 is rendered when a reply creates it); the rest is frozen; only a draft is deleted.
    category = make_category()
    make_contact(categories=[category])
    campaign = make_campaign(categories=[category])
    detail = f"/api/campaigns/{campaign.pk}/"
    assert staff.post(f"{detail}launch/", {}, format="json").status_code == 200

    again = staff.post(f"{detail}launch/", {}, format="json")
    assert (again.status_code, again.json()["code"]) == (409, "already_launched")
    edited = staff.patch(detail, {"name": "x", "message_2_text": "Thanks {{ first_name }}!"}, format="json")
    assert (edited.status_code, edited.json()["name"]) == (200, "x")
    unchanged = staff.patch(detail, {"categories": [category.pk]}, format="json")
    assert unchanged.status_code == 200  # a frozen field sent as it is changes nothing
    other = make_category()
    whole = {**staff.get(detail).json(), "categories": [other.pk]}
    for method, body in (("patch", {"categories": [other.pk]}), ("put", whole)):
        response = getattr(staff, method)(detail, body, format="json")
        assert (response.status_code, response.json()["code"]) == (409, "frozen_after_launch")
    deleted = staff.delete(detail)
    assert (deleted.status_code, deleted.json()["code"]) == (409, "not_draft")
    paused = staff.post(f"/api/campaigns/{campaign.pk}/pause/")
    assert (paused.status_code, paused.json()["status"]) == (200, "paused")
    cancelled = staff.post(f"/api/campaigns/{campaign.pk}/cancel/")
    assert cancelled.json() | {"campaign": None} == {"campaign": None, "messages_cancelled": 1}


def test_a_campaign_needs_a_message_1(staff):
    body = {
        "name": "C",
        "devices": [make_device().pk],
        "categories": [make_category().pk],
        "message_2_text": "M",
    }
    response = staff.post("/api/campaigns/", body, format="json")
    assert response.status_code == 400
    assert "message_1_text" in response.json()


def test_daily_stats_give_each_device_and_the_worst_alert_level(reader, fake_clock):
    busy = make_device(label="A busy one", daily_limit=1000)
    DeviceDay.objects.create(device=busy, day=fake_clock.now().date(), message_1_count=950)
    response = reader.get("/api/stats/daily/", {"day": "2026-03-29"})
    assert response.status_code == 200
    assert response.json()["level"] == "danger"
    levels = {row["device"]: (row["sends"], row["level"]) for row in response.json()["devices"]}
    assert levels["A busy one"] == (950, "danger")
    assert {level for _, level in levels.values()} == {"ok", "danger"}
    assert reader.get("/api/stats/daily/").json()["day"] == "2026-03-29"
    assert reader.get("/api/stats/daily/", {"day": "9999-12-31"}).status_code == 400
    assert reader.get("/api/stats/daily/", {"day": "yesterday"}).status_code == 400


def test_the_opt_out_confirmation_is_off_by_default_and_set_through_the_api(staff):
    campaign = _create_campaign(staff, make_device(), contacts=1)
    assert campaign["opt_out_confirmation"] == ""  # off unless the operator writes one
    text = "C'est noté {{ first_name }}, vous ne recevrez plus de messages."
    response = staff.patch(f"/api/campaigns/{campaign['id']}/", {"opt_out_confirmation": text}, format="json")
    assert response.status_code == 200, response.json()
    assert staff.get(f"/api/campaigns/{campaign['id']}/").json()["opt_out_confirmation"] == text
