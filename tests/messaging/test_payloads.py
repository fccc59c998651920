"""The readers of Wassenger's webhook payloads (messaging/wassenger/payloads.py).

Processing and storage are tested through the webhook (tests/webhooks/); these pin the
readers themselves, and that the client and the webhook share one rule for an error
about the recipient's number.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime

import pytest
import responses
from hypothesis import given
from hypothesis import strategies as st

from messaging import wassenger
from messaging.wassenger import payloads
from tests import wassenger_shapes as shapes

API = "https://api.wassenger.test/v1"
PHONE = "+33612345678"


def test_format_a_is_one_event_and_format_b_each_item_of_its_array():
    event = {"event": "message:in:new", "data": {}}
    assert payloads.body_events(event) == [event]
    assert payloads.body_events([event, event]) == [event, event]
    assert payloads.body_events([]) == [[]]  # an empty array is one (rejected) event


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1_700_000_000, datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)),
        (1_700_000_000_000, datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)),
        ("2023-11-14T22:13:20Z", datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)),
        ("2023-11-14T22:13:20", datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)),
        (12, None),
        (True, None),
        ("yesterday", None),
        ("1800-01-01T00:00:00Z", None),
    ],
)
def test_times_are_epochs_or_iso_8601_within_this_century(value, expected):
    assert payloads.moment_of(value) == expected


def test_a_reply_is_timed_by_its_own_date_and_a_receipt_by_its_envelope():
    item = {"created": "2024-01-02T00:00:00Z", "data": {"date": "2024-01-01T00:00:00Z"}}
    assert payloads.event_time(item, inbound=True).day == 1
    assert payloads.event_time(item, inbound=False).day == 2


def test_ids_tell_wassengers_24_hex_id_from_whatsapps():
    data = {"id": "61b37a069cba0c15d6c89757", "waId": "3EB0ABCDEF"}
    assert payloads.message_event_ids(data) == ("61b37a069cba0c15d6c89757", "3EB0ABCDEF")
    assert payloads.message_event_ids({"id": "3EB0ABCDEF"}) == ("", "3EB0ABCDEF")


def test_the_session_status_is_read_wherever_wassenger_puts_it():
    assert payloads.session_status({"data": {"session": {"status": "OFFLINE"}}}) == "offline"
    assert payloads.session_status({"device": {"session": {"status": "online"}}, "data": {}}) == "online"
    assert payloads.session_status({"data": {}}) == ""


@pytest.mark.parametrize(
    ("reason", "missing"),
    [
        ("Phone number does not exist on WhatsApp", True),
        ("recipient not found", True),
        ("message not found", False),
        ("invalid media", False),
    ],
)
def test_a_failure_marks_the_number_missing_only_when_it_names_the_number(reason, missing):
    assert payloads.failure_names_missing_number(reason) is missing


@responses.activate
def test_the_client_and_the_webhook_read_an_invalid_number_alike(settings):
    settings.WASSENGER_API_URL = API
    reason = "Invalid phone number"
    responses.post(f"{API}/messages", status=400, json={"message": reason, "errorCode": "invalid_request"})
    with pytest.raises(wassenger.InvalidNumber):
        wassenger.send_message(phone=PHONE, reference="r-1", text="Bonjour")
    assert payloads.failure_names_missing_number(reason)


# --- Inbound: who wrote, and whether it is a conversation (the shapes of tests/wassenger_shapes.py) ---


@pytest.mark.parametrize(
    ("example", "contact"),
    [
        (shapes.SPEC_IN_NEW, shapes.SPEC_CONTACT_PHONE),  # fromNumber is the device's number
        (shapes.WILD_IN_NEW, shapes.WILD_CONTACT_PHONE),  # fromNumber is the contact
        (shapes.LID_IN_NEW, shapes.WILD_CONTACT_PHONE),  # from is a @lid id: chat.contact.phone
    ],
    ids=["spec", "wild", "lid"],
)
def test_the_contact_of_an_inbound_message_is_the_chats_other_party(example, contact):
    assert payloads.inbound_kind(example["data"]) == ""
    assert payloads.inbound_contact_number(example) == contact


def test_without_a_chat_the_device_number_in_from_number_is_skipped_for_the_recipient():
    item = copy.deepcopy(shapes.SPEC_IN_NEW)
    del item["data"]["chat"]
    assert payloads.inbound_contact_number(item) == shapes.SPEC_CONTACT_PHONE
    del item["device"]  # our own numbers, as the caller knows them, are skipped alike
    assert payloads.inbound_contact_number(item, own_numbers=frozenset({"+4412345678"})) == "+1234567890"


def test_a_contact_known_only_by_its_lid_has_no_number_but_says_so():
    item = copy.deepcopy(shapes.LID_IN_NEW)
    del item["data"]["chat"]["contact"]
    assert payloads.inbound_contact_number(item) == ""
    assert payloads.inbound_lid(item["data"]) == "183807571451999@lid"


def _in_chat(chat_id: str = "", chat_type: str = "", **meta) -> dict:
    data = copy.deepcopy(shapes.WILD_IN_NEW["data"])
    data["chat"].update({k: v for k, v in (("id", chat_id), ("type", chat_type)) if v})
    data["meta"].update(meta)
    return data


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (shapes.GROUP_IN_NEW["data"], "group"),
        (_in_chat(isGroup=True), "group"),
        (_in_chat("120363025246125486@g.us"), "group"),
        (_in_chat("120363144038483540@newsletter"), "channel"),
        (_in_chat(chat_type="channel"), "channel"),
        (_in_chat("status@broadcast"), "status"),
        (_in_chat(isNotification=True), "system"),
        ({**_in_chat(), "type": "e2e_notification"}, "system"),
        (_in_chat(), ""),
    ],
)
def test_groups_channels_statuses_and_notices_are_told_from_a_conversation(data, kind):
    assert payloads.inbound_kind(data) == kind


_NUMBERS = st.sampled_from(["+33612345678", "+4412345678", "+5215617354008"])


@given(
    device=_NUMBERS,
    contact=_NUMBERS,
    from_is_device=st.booleans(),
    with_chat=st.booleans(),
    with_contact=st.booleans(),
)
def test_the_device_own_number_is_never_the_contact(device, contact, from_is_device, with_chat, with_contact):
    item = copy.deepcopy(shapes.SPEC_IN_NEW)
    data, sender = item["data"], device if from_is_device else contact
    item["device"]["phone"] = device
    data.update(fromNumber=sender, **{"from": f"{sender[1:]}@c.us", "toNumber": "", "to": ""})
    data["chat"]["id"] = f"{contact[1:]}@c.us"
    data["chat"]["contact"]["phone"] = contact
    if not with_contact:
        del data["chat"]["contact"]
    if not with_chat:
        del data["chat"]
    found = payloads.inbound_contact_number(item)
    assert found != device
    assert found in ("", contact)
    assert found == contact or device == contact or (from_is_device and not with_chat)


def test_every_documented_shape_passes_its_own_check_and_a_tidied_one_does_not():
    for name, example in shapes.SHAPES.items():
        assert shapes.event_problems(example) == [], name
    tidied = copy.deepcopy(shapes.SPEC_OUT_ACK)
    tidied["data"]["reference"] = "ours"
    del tidied["data"]["chat"]
    assert shapes.event_problems(tidied) == [
        ".data.chat: missing",
        ".data.reference: not in the documented shape",
    ]
