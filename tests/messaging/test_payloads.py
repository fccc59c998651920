"""The readers of Wassenger's webhook payloads (messaging/wassenger/payloads.py).

Processing and storage are tested through the webhook (tests/webhooks/); these pin the
readers themselves, and that the client and the webhook share one rule for an error
about the recipient's number.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import responses

from messaging import wassenger
from messaging.wassenger import payloads

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
