"""The Wassenger client against `responses`: parsing, the error mapping, logs without secrets."""

from __future__ import annotations

import json
import logging
import socket
from http.client import RemoteDisconnected
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from django.conf import settings as django_settings
from django.test import override_settings
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from urllib3.exceptions import (
    MaxRetryError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)

from messaging import wassenger
from messaging.wassenger import (
    AuthError,
    DeviceRefused,
    InvalidNumber,
    OutcomeUnknown,
    RateLimited,
    Rejected,
    Transient,
    WassengerError,
    client,
)
from tests.messaging.wassenger_requests import request_problems

API = "https://api.wassenger.test/v1"
TOKEN = "tok-Q7x9-DO-NOT-LEAK-b1e55ed"
PHONE = "+33612345678"
REFERENCE = "2b0c7f7e-6f53-4a6e-9d4f-1f6f4b1c2d3e"
SUBCLASSES = (RateLimited, InvalidNumber, AuthError, DeviceRefused, Rejected, Transient, OutcomeUnknown)
# The real send response quoted in wassenger-api.md (KEET), plus our reference.
KEET = {
    "id": "60d6073758a1a1100820e16c",
    "waId": "3EB03ABE887CDD0CFC6B",
    "phone": "+5214492090586",
    "wid": "5214492090586@c.us",
    "status": "queued",
    "deliveryStatus": "queued",
    "createdAt": "2021-06-25T16:41:27.973Z",
    "message": "Hola",
    "priority": "normal",
    "reference": REFERENCE,
    "device": "60d4987e48b592aa82f09e92",
}

pytestmark = pytest.mark.usefixtures("client_settings")


@pytest.fixture
def client_settings(settings):
    settings.WASSENGER_API_URL = API
    settings.WASSENGER_API_TOKEN = TOKEN
    settings.WASSENGER_CONNECT_TIMEOUT = 3.0
    settings.WASSENGER_READ_TIMEOUT = 7.0


@pytest.fixture
def api():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock
        # Every request the client sent has the documented shape (tests/messaging/wassenger_requests.py).
        for call in mock.calls:
            token = django_settings.WASSENGER_API_TOKEN  # the one in force (a test may change it)
            assert request_problems(call.request, token=token) == [], call.request.url


def send() -> wassenger.SendResult:
    return wassenger.send_message(phone=PHONE, reference=REFERENCE, text="Bonjour Camille")


def error_body(status: int, message: str, code: str = "") -> dict:
    return {"status": status, "message": message, "errorCode": code, "errors": [], "meta": {}}


# --- Success ------------------------------------------------------------------------


def test_send_message_posts_text_with_token_and_returns_both_ids(api):
    api.post(f"{API}/messages", json=KEET, status=201)
    result = wassenger.send_message(
        phone=PHONE, reference=REFERENCE, text="Bonjour", device="60d4987e48b592aa82f09e92", priority="high"
    )
    assert result == wassenger.SendResult("60d6073758a1a1100820e16c", "3EB03ABE887CDD0CFC6B", "queued", KEET)
    sent = api.calls[0].request
    assert json.loads(sent.body) == {
        "phone": PHONE,
        "reference": REFERENCE,
        "priority": "high",
        "message": "Bonjour",
        "device": "60d4987e48b592aa82f09e92",
    }
    assert sent.headers["Token"] == TOKEN
    assert sent.headers["User-Agent"] == "Relance/1.0 (+WhatsApp campaigns)"


def test_send_message_maps_a_template_to_wassengers_template_field(api):
    api.post(f"{API}/messages", json=KEET, status=201)
    template = {"name": "relance_1", "language": "fr", "variables": ["Camille", "lundi"]}
    wassenger.send_message(phone=PHONE, reference=REFERENCE, template=template)
    body = json.loads(api.calls[0].request.body)
    assert "message" not in body and "device" not in body
    assert body["template"] == {
        "name": "relance_1",
        "language": "fr",
        "body": [{"name": "1", "value": "Camille"}, {"name": "2", "value": "lundi"}],
    }


def test_named_template_variables_become_name_value_pairs(api):
    api.post(f"{API}/messages", json=KEET, status=201)
    template = {"name": "relance_1", "language": "fr", "variables": {"first_name": "Camille"}}
    wassenger.send_message(phone=PHONE, reference=REFERENCE, template=template)
    assert json.loads(api.calls[0].request.body)["template"]["body"] == [
        {"name": "first_name", "value": "Camille"}
    ]


@pytest.mark.parametrize("text, template", [("", None), ("hi", {"name": "t", "language": "fr"})])
def test_send_message_needs_exactly_one_of_text_and_template(text, template):
    with pytest.raises(ValueError, match="exactly one"):
        wassenger.send_message(phone=PHONE, reference=REFERENCE, text=text, template=template)


def test_send_message_uses_the_configured_timeouts(api, monkeypatch):
    api.post(f"{API}/messages", json=KEET, status=200)
    seen = {}
    original = requests.Session.request

    def spy(self, method, url, **kwargs):
        seen.update(kwargs)
        return original(self, method, url, **kwargs)

    monkeypatch.setattr(requests.Session, "request", spy)
    send()
    assert seen["timeout"] == (3.0, 7.0)
    assert seen["allow_redirects"] is False


@pytest.mark.parametrize(
    "body, exists, wid",
    [
        (
            {"exists": True, "phone": PHONE, "wid": "33612345678@c.us", "isBusiness": False},
            True,
            "33612345678@c.us",
        ),
        ({"exists": False, "phone": PHONE}, False, ""),
    ],
)
def test_check_number_reads_exists_and_the_whatsapp_id(api, body, exists, wid):
    api.post(f"{API}/numbers/exists", json=body)
    assert wassenger.check_number(PHONE) == wassenger.NumberCheck(PHONE, exists, wid)
    assert json.loads(api.calls[0].request.body) == {"phone": PHONE}


def test_get_message_returns_the_remote_message(api):
    api.get(f"{API}/messages/{KEET['id']}", json={**KEET, "deliveryStatus": "read"})
    remote = wassenger.get_message(KEET["id"])
    assert (remote.wassenger_id, remote.whatsapp_id, remote.status) == (KEET["id"], KEET["waId"], "queued")
    assert (remote.delivery_status, remote.reference) == ("read", REFERENCE)


def test_get_message_returns_none_for_an_unknown_id(api):
    api.get(f"{API}/messages/ffffffffffffffffffffffff", json=error_body(404, "Not found"), status=404)
    assert wassenger.get_message("ffffffffffffffffffffffff") is None


def test_find_message_by_reference_asks_by_reference_and_checks_the_answer(api):
    other = {**KEET, "id": "60d6073758a1a1100820e16d", "reference": "someone-else"}
    api.get(f"{API}/messages", json=[other, KEET])
    remote = wassenger.find_message_by_reference(REFERENCE)
    assert remote.wassenger_id == KEET["id"]
    # Section 0: reference is an array filter, one page of `size` from page 0.
    query = parse_qs(urlsplit(api.calls[0].request.url).query)
    assert query == {"reference": [REFERENCE], "page": ["0"], "size": ["20"]}


@pytest.mark.parametrize(
    "envelope",
    [
        lambda items: items,
        lambda items: {"data": items},
        lambda items: {"messages": items, "total": len(items)},
        lambda items: {"page": 0, "size": 20, "whatever": items},
    ],
    ids=["list", "data", "messages", "only-list"],
)
def test_a_lookup_accepts_a_list_or_an_object_holding_one(api, envelope):
    api.get(f"{API}/messages", json=envelope([KEET]))
    assert wassenger.find_message_by_reference(REFERENCE).wassenger_id == KEET["id"]


@pytest.mark.parametrize("body", [{}, {"a": [KEET], "b": []}, {"data": "nope"}, {"total": 1}])
def test_a_lookup_envelope_without_one_clear_list_finds_nothing(api, body):
    api.get(f"{API}/messages", json=body)
    assert wassenger.find_message_by_reference(REFERENCE) is None


def test_of_several_copies_the_lookup_prefers_one_that_did_not_fail_then_the_latest(api):
    failed = {
        **KEET,
        "id": "60d6073758a1a1100820e16a",
        "status": "failed",
        "createdAt": "2021-06-25T17:00:00Z",
    }
    older = {**KEET, "id": "60d6073758a1a1100820e16b", "createdAt": "2021-06-25T16:00:00Z"}
    api.get(f"{API}/messages", json=[failed, older, KEET])
    assert wassenger.find_message_by_reference(REFERENCE).wassenger_id == KEET["id"]


@pytest.mark.parametrize(
    "fields, failed, given_up, rank",
    [
        ({"status": "queued", "deliveryStatus": "queued"}, False, False, 1),
        ({"status": "processing", "deliveryStatus": "processing"}, False, False, 1),
        ({"status": "processed", "deliveryStatus": "delivered"}, False, False, 2),
        ({"status": "processed", "deliveryStatus": "readed"}, False, False, 3),
        ({"status": "processed", "deliveryStatus": "played"}, False, False, 3),
        ({"status": "failed", "deliveryStatus": "failed"}, True, False, 1),
        ({"status": "invalid"}, True, False, 1),
        ({"status": "expired"}, True, True, 1),
        ({"status": "removed"}, True, True, 1),
        ({"status": "processed", "deliveryStatus": "cancelled"}, True, False, 1),
        ({"status": "Something-New"}, False, False, 1),
    ],
)
def test_a_found_message_is_read_as_wassenger_says(api, fields, failed, given_up, rank):
    api.get(f"{API}/messages/{KEET['id']}", json={**KEET, **fields})
    remote = wassenger.get_message(KEET["id"])
    assert (remote.failed, remote.given_up, remote.rank) == (failed, given_up, rank)


def test_a_found_message_carries_wassengers_own_times_and_failure(api):
    body = {**KEET, "status": "failed", "sentAt": "2021-06-25T16:41:30Z", "failedAt": "2021-06-25T16:42:00Z"}
    api.get(f"{API}/messages/{KEET['id']}", json={**body, "failureReason": "Phone number not found"})
    remote = wassenger.get_message(KEET["id"])
    assert remote.created_at.isoformat() == "2021-06-25T16:41:27.973000+00:00"
    assert (remote.sent_at.minute, remote.sent_at.second, remote.failed_at.minute) == (41, 30, 42)
    assert (remote.failure_reason, remote.not_on_whatsapp) == ("Phone number not found", True)


def test_find_message_by_reference_ignores_messages_of_other_references(api):
    # An API that ignores the filter must not make us adopt somebody else's message.
    api.get(f"{API}/messages", json={"data": [{**KEET, "reference": "someone-else"}]})
    assert wassenger.find_message_by_reference(REFERENCE) is None


@pytest.mark.parametrize(
    "body",
    [b"", b"<html>OK</html>", b'{"id": "60d6', b"[]", b'{"status": "queued"}', b'{"id": 42}'],
    ids=["empty", "html", "truncated", "list", "no-id", "numeric-id"],
)
def test_a_2xx_send_answer_we_cannot_read_is_outcome_unknown(api, body):
    api.post(f"{API}/messages", body=body, status=201)
    with pytest.raises(OutcomeUnknown) as caught:
        send()
    assert caught.value.status == 201


# --- Error mapping ------------------------------------------------------------------

STATUS_TABLE = [
    (400, error_body(400, "Invalid phone number", "error:invalid_phone"), InvalidNumber),
    (422, error_body(422, "The number is not registered on WhatsApp"), InvalidNumber),
    (
        400,
        {"message": "Invalid request", "errors": [{"code": "phone", "message": "bad format"}]},
        InvalidNumber,
    ),
    (400, error_body(400, "Invalid request body", "error:invalid_body"), Rejected),
    (400, error_body(400, "Device phone number is not connected"), DeviceRefused),
    (400, error_body(400, "Device queue is in reject mode", "queue:reject"), DeviceRefused),
    (400, error_body(400, "Messages are refused", "queue:freeze"), DeviceRefused),
    (400, error_body(400, "Template is not approved"), DeviceRefused),
    (400, error_body(400, "Account suspended"), DeviceRefused),
    (400, error_body(400, "Message failed", "number:notfound"), InvalidNumber),
    (410, error_body(410, "Gone", "number:notfound"), InvalidNumber),
    (400, error_body(400, "The number blocked you", "contact:blocked"), Rejected),
    (400, error_body(400, "Cannot start a chat", "message:forbidden_first_message"), Rejected),
    (404, error_body(404, "Phone number not found"), InvalidNumber),
    (400, "<html>Bad phone</html>", Rejected),
    (401, error_body(401, "Invalid or missing API token"), AuthError),
    (402, error_body(402, "Plan limit exceeded"), AuthError),
    (403, error_body(403, "Missing permissions"), AuthError),
    (404, error_body(404, "Not found"), DeviceRefused),  # POST /messages exists: the device does not
    (404, error_body(404, "Device not found", "error:device_not_found"), DeviceRefused),
    (409, error_body(409, "Conflict"), OutcomeUnknown),  # it may mean "already queued"
    (413, "", Rejected),
    (451, error_body(451, "Unavailable for legal reasons"), Rejected),
    (302, "", Rejected),
    (408, "", Transient),
    (429, error_body(429, "Too many requests", "error:rate_limit"), RateLimited),
    (503, "<html>Service Unavailable</html>", RateLimited),
    (500, error_body(500, "Internal error"), OutcomeUnknown),  # SPEC: no proof nothing was queued
    (501, "", Transient),
    (502, "<html>Bad Gateway</html>", OutcomeUnknown),
    (504, "", OutcomeUnknown),
]


@pytest.mark.parametrize("status, body, expected", STATUS_TABLE)
def test_each_http_status_becomes_one_typed_error(api, status, body, expected):
    api.post(
        f"{API}/messages", status=status, **({"json": body} if isinstance(body, dict) else {"body": body})
    )
    with pytest.raises(WassengerError) as caught:
        send()
    assert type(caught.value) is expected
    assert caught.value.status == status


def test_the_error_carries_wassengers_error_code_and_message(api):
    api.post(f"{API}/messages", json=error_body(429, "Too many requests", "error:rate_limit"), status=429)
    with pytest.raises(RateLimited) as caught:
        send()
    assert (caught.value.error_code, caught.value.detail) == ("error:rate_limit", "Too many requests")
    assert str(caught.value) == "HTTP 429: error:rate_limit: Too many requests"


def test_a_long_body_is_truncated_in_the_error(api):
    api.post(f"{API}/messages", body="<html>" + "x" * 5000, status=501)
    with pytest.raises(Transient) as caught:
        send()
    assert len(str(caught.value)) < 300


def _refused() -> Exception:
    conn = object()
    return requests.ConnectionError(MaxRetryError(None, API, NewConnectionError(conn, "Connection refused")))


def _dns() -> Exception:
    conn = object()
    return requests.ConnectionError(
        MaxRetryError(None, API, NameResolutionError("api.wassenger.test", conn, OSError("no such host")))
    )


NETWORK_TABLE = [
    (requests.ConnectTimeout("connect timed out"), Transient),
    (_refused(), Transient),
    (_dns(), Transient),
    (requests.exceptions.SSLError("handshake failed"), Transient),
    (requests.ReadTimeout(ReadTimeoutError(None, API, "read timed out")), OutcomeUnknown),
    (
        requests.ConnectionError(ProtocolError("Connection aborted.", RemoteDisconnected("closed"))),
        OutcomeUnknown,
    ),
    (
        requests.ConnectionError(ProtocolError("Connection aborted.", ConnectionResetError(104))),
        OutcomeUnknown,
    ),
    (requests.exceptions.ChunkedEncodingError("connection broken"), OutcomeUnknown),
    (requests.exceptions.ContentDecodingError("bad gzip"), OutcomeUnknown),
]


@pytest.mark.parametrize("failure, expected", NETWORK_TABLE, ids=lambda v: type(v).__name__)
def test_each_network_failure_becomes_one_typed_error(api, failure, expected):
    api.post(f"{API}/messages", body=failure)
    with pytest.raises(WassengerError) as caught:
        send()
    assert type(caught.value) is expected
    assert caught.value.status is None


def test_a_refused_connection_on_a_real_socket_is_transient(settings):
    with socket.socket() as probe:  # a port that was free a moment ago: nobody listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.WASSENGER_API_URL = f"http://127.0.0.1:{port}/v1"
    with pytest.raises(Transient, match="ConnectionError"):
        send()


@pytest.mark.parametrize(
    "header, seconds",
    [
        ("7", 7.0),
        ("0", 0.0),
        ("Sun, 29 Mar 2026 09:00:30 GMT", 30.0),
        ("Sun, 29 Mar 2026 08:00:00 GMT", 0.0),  # already past: no wait
        ("soon", None),
        ("-5", None),
        (None, None),
    ],
)
def test_retry_after_in_seconds_or_as_an_http_date(api, fake_clock, header, seconds):
    headers = {"Retry-After": header} if header is not None else {}
    api.post(f"{API}/messages", json=error_body(429, "slow down"), status=429, headers=headers)
    with pytest.raises(RateLimited) as caught:
        send()
    assert caught.value.retry_after == seconds


# --- Every failure is exactly one typed error (hypothesis) ---------------------------

_text = st.text(max_size=40)
_wassenger_error = st.fixed_dictionaries(
    {"status": st.integers(400, 599), "message": _text, "errorCode": _text},
    optional={"errors": st.lists(st.fixed_dictionaries({"code": _text, "reason": _text, "message": _text}))},
).map(lambda d: json.dumps(d).encode())
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | _text,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_text, children, max_size=3),
    max_leaves=8,
).map(lambda v: json.dumps(v).encode())


@st.composite
def _truncated(draw) -> bytes:
    whole = draw(_wassenger_error)
    return whole[: draw(st.integers(0, max(0, len(whole) - 1)))]


BODIES = st.one_of(
    _wassenger_error,
    st.just(b""),
    st.just(b"<!DOCTYPE html><html><body><h1>Bad Gateway</h1></body></html>"),
    _truncated(),
    st.binary(max_size=200),
    _json_values,
)
RETRY_AFTER = st.one_of(
    st.none(),
    st.integers(-10, 10**6).map(str),
    st.just("Wed, 21 Oct 2015 07:28:00 GMT"),
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30),
)
CALLS = {
    "send": lambda: send(),
    "check": lambda: wassenger.check_number(PHONE),
    "get": lambda: wassenger.get_message(KEET["id"]),
    "find": lambda: wassenger.find_message_by_reference(REFERENCE),
}
ROUTES = {
    "send": ("POST", f"{API}/messages"),
    "check": ("POST", f"{API}/numbers/exists"),
    "get": ("GET", f"{API}/messages/{KEET['id']}"),
    "find": ("GET", f"{API}/messages"),
}


def expected_errors(status: int, call: str) -> tuple[type[WassengerError], ...]:
    if status in (429, 503):
        return (RateLimited,)
    if status in (401, 402, 403):
        return (AuthError,)
    if status in (502, 504) or (call == "send" and status in (409, 500)):
        return (OutcomeUnknown,)
    if status >= 500 or status == 408:
        return (Transient,)
    if call == "send":  # a 4xx about the device halts it; a 404 on POST /messages is one
        return (InvalidNumber, DeviceRefused) if status == 404 else (InvalidNumber, DeviceRefused, Rejected)
    return (InvalidNumber, Rejected)


@hypothesis_settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    status=st.integers(400, 599),
    body=BODIES,
    retry_after=RETRY_AFTER,
    call=st.sampled_from(sorted(CALLS)),
)
@override_settings(WASSENGER_API_URL=API, WASSENGER_API_TOKEN=TOKEN)
def test_any_error_answer_is_exactly_one_typed_error(status, body, retry_after, call):
    method, url = ROUTES[call]
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    with responses.RequestsMock() as api:
        api.add(method, url, body=body, status=status, headers=headers)
        try:
            result = CALLS[call]()
        except WassengerError as error:
            assert type(error) in SUBCLASSES
            assert isinstance(error, expected_errors(status, call))
            assert error.status == status
            assert TOKEN not in str(error)
            if isinstance(error, RateLimited):
                assert error.retry_after is None or error.retry_after >= 0
        else:
            assert call == "get" and status == 404 and result is None


MESSAGE_ONLY_CODES = ["contact:blocked", "max_retries", "message:forbidden_first_message", "chat:cannot_send"]


@hypothesis_settings(max_examples=200, deadline=None)
@given(
    code=st.sampled_from(["number:notfound", "waba:error", *MESSAGE_ONLY_CODES]),
    # Words, not codes: a message that itself names a code (Hypothesis draws the module's own
    # literals, "NUMBER:NOTFOUND" among them) is judged by that code, as it should be.
    message=st.sampled_from(["", "Phone number not found", "Device queue frozen", "Failed"])
    | _text.filter(lambda text: wassenger.payloads.failure_code_verdict(text) is None),
    status=st.sampled_from([400, 404, 410, 422]),
    where=st.sampled_from(["errorCode", "errors"]),
)
@override_settings(WASSENGER_API_URL=API, WASSENGER_API_TOKEN=TOKEN)
def test_wassengers_failure_codes_decide_whether_the_number_is_not_on_whatsapp(code, message, status, where):
    body = error_body(status, message, code if where == "errorCode" else "")
    if where == "errors":
        body["errors"] = [{"code": code, "reason": "", "message": message}]
    with responses.RequestsMock() as api:
        api.post(f"{API}/messages", json=body, status=status)
        with pytest.raises(WassengerError) as caught:
            send()
    # Wassenger's own code wins over the words, and never halts the device.
    assert type(caught.value) is (InvalidNumber if code == "number:notfound" else Rejected)
    assert wassenger.payloads.failure_names_missing_number(f"{code}: {message}") is (
        code == "number:notfound"
    )


@given(reason=st.text(max_size=80))
def test_any_failure_reason_is_decided_without_an_error(reason):
    assert isinstance(wassenger.payloads.failure_names_missing_number(reason), bool)
    assert wassenger.payloads.failure_names_missing_number("") is False  # no reason: the message only


# --- Logs and secrets ---------------------------------------------------------------


def test_each_call_logs_one_line_with_a_masked_phone_and_no_secret(api, caplog):
    api.post(f"{API}/messages", json=KEET, status=201)
    api.post(f"{API}/numbers/exists", json=error_body(429, "slow down"), status=429)
    caplog.set_level(logging.INFO, logger="messaging.wassenger")
    send()
    with pytest.raises(RateLimited):
        wassenger.check_number(PHONE)
    lines = [r.getMessage() for r in caplog.records if r.name == "messaging.wassenger"]
    assert len(lines) == 2
    assert lines[0].startswith("POST /messages 201 ") and lines[0].endswith("phone=+336•••••678")
    assert lines[1].startswith("POST /numbers/exists 429 RateLimited ")
    assert all(PHONE not in line and "Bonjour" not in line and TOKEN not in line for line in lines)


def test_a_network_failure_is_logged_with_its_exception_name(api, caplog):
    api.post(f"{API}/messages", body=requests.ReadTimeout("read timed out"))
    caplog.set_level(logging.INFO, logger="messaging.wassenger")
    with pytest.raises(OutcomeUnknown):
        send()
    (record,) = [r for r in caplog.records if r.name == "messaging.wassenger"]
    assert record.levelno == logging.WARNING
    assert record.getMessage().startswith("POST /messages ReadTimeout OutcomeUnknown ")


@pytest.mark.parametrize(
    "answer",
    [
        {"json": error_body(401, f"Invalid token {TOKEN}", f"error:token:{TOKEN}"), "status": 401},
        {"body": f"<html>token={TOKEN}</html>", "status": 500},
        {"body": requests.ConnectionError(f"failed with header Token: {TOKEN}")},
    ],
    ids=["echoed-in-json", "echoed-in-html", "in-the-exception"],
)
def test_the_token_never_appears_in_errors_or_logs(api, caplog, answer):
    api.post(f"{API}/messages", **answer)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(WassengerError) as caught:
        send()
    error = caught.value
    assert TOKEN not in str(error) and TOKEN not in repr(error)
    assert TOKEN not in error.detail and TOKEN not in error.error_code
    assert TOKEN not in caplog.text


# --- The session --------------------------------------------------------------------


def test_one_session_per_process_recreated_after_a_fork(monkeypatch):
    first = client._session()
    assert client._session() is first
    monkeypatch.setattr(client.os, "getpid", lambda: -1)  # as seen from a forked child
    assert client._session() is not first


def test_settings_are_read_at_call_time(api, settings):
    settings.WASSENGER_API_URL = "https://other.wassenger.test/v1/"
    settings.WASSENGER_API_TOKEN = "another-token"
    api.post("https://other.wassenger.test/v1/messages", json=KEET)
    send()
    assert api.calls[0].request.headers["Token"] == "another-token"
