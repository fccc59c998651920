"""POST /webhooks/wassenger/: authentication, limits, storage once, and never a 5xx."""

import json

import pytest
from django.core import mail
from django_q.conf import Conf
from django_q.models import OrmQ
from django_q.signing import SignedPackage
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from messaging.models import MessageStatus
from tests.webhooks.conftest import (
    SECRET,
    URL,
    ack_event,
    failed_event,
    reply_event,
    sent_message_1,
    session_event,
)
from webhooks.models import EventStatus, WebhookEvent
from webhooks.tasks import process_event

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("secret", [None, "", "wrong", SECRET[:-1], SECRET + "x"])
def test_a_wrong_or_missing_secret_is_refused_and_nothing_is_stored(post, secret):
    response = post(reply_event("+33612345678", "Bonjour"), secret=secret)
    assert response.status_code == 403
    assert WebhookEvent.objects.count() == 0


def test_the_secret_may_come_in_a_header_instead_of_the_query(post):
    response = post(reply_event("+33612345678", "Bonjour"), secret=None, X_Webhook_Secret=SECRET)
    assert response.status_code == 200
    assert WebhookEvent.objects.count() == 1


def test_a_body_over_the_limit_is_refused_with_413_before_anything_is_stored(post, settings):
    settings.WEBHOOK_MAX_BODY_BYTES = 1000
    response = post(reply_event("+33612345678", "x" * 2000))
    assert response.status_code == 413
    assert "1000 bytes" in response.json()["error"]
    assert WebhookEvent.objects.count() == 0


@pytest.mark.parametrize(
    "raw, reason",
    [
        (b"", "empty"),
        (b"{not json", "not JSON"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b'{"event": NaN}', "not JSON"),
        (b'{"n": 1e400}', "not JSON"),
        (b"[" * 100_000, "nested too deeply"),
    ],
)
def test_a_body_that_is_not_json_is_refused_with_400_and_the_reason(post, raw, reason):
    response = post(raw=raw)
    assert response.status_code == 400
    assert reason in response.json()["error"]
    assert WebhookEvent.objects.count() == 0


def test_only_post_is_allowed(client, inline_tasks):
    assert client.get(f"{URL}?secret={SECRET}").status_code == 405


def test_the_url_works_without_its_trailing_slash(post):
    assert post(reply_event("+33612345678", "Bonjour"), path=URL.rstrip("/")).status_code == 200


def queued_tasks() -> list[tuple[str, dict]]:
    return [(row.key, SignedPackage.loads(row.payload)) for row in OrmQ.objects.order_by("id")]


def test_each_new_event_is_stored_raw_with_its_processing_task_on_the_default_cluster(post, monkeypatch):
    monkeypatch.setattr(Conf, "SYNC", False)  # the real broker path: tasks wait in django-q's queue
    message = sent_message_1()
    payload = ack_event(message, "read")
    assert post(payload).json() == {"stored": 1, "rejected": 0, "duplicates": 0}
    event = WebhookEvent.objects.get()
    assert (event.payload, event.event, event.status) == (payload, "message:out:ack", EventStatus.RECEIVED)
    assert event.dedup_key == f"message:out:ack|{payload['data']['id']}|read"
    [(queue, task)] = queued_tasks()
    assert (queue, task["func"], task["args"]) == (
        "relance",
        "webhooks.tasks.process_event",
        (event.dedup_key,),
    )
    post(payload)
    post({"not": "an event"})
    assert len(queued_tasks()) == 1  # none for a redelivery, none for a rejected event
    assert process_event(*task["args"]) == EventStatus.PROCESSED
    message.refresh_from_db()
    assert message.status == MessageStatus.READ


def test_a_format_b_array_gets_one_task_per_new_event(post, monkeypatch):
    monkeypatch.setattr(Conf, "SYNC", False)
    items = failed_event(sent_message_1(), "max retries exceeded")
    items += failed_event(sent_message_1(), "max retries exceeded")
    assert post(items + items).json() == {"stored": 2, "rejected": 0, "duplicates": 2}
    keys = {task["args"][0] for _, task in queued_tasks()}
    assert keys == set(WebhookEvent.objects.values_list("dedup_key", flat=True))


def test_a_redelivered_event_answers_200_and_changes_nothing(post):
    message = sent_message_1()
    payload = ack_event(message, "read")
    post(payload)
    first = WebhookEvent.objects.values().get()
    message.refresh_from_db()
    updated = message.updated_at
    for _ in range(4):
        assert post(payload).json() == {"stored": 0, "rejected": 0, "duplicates": 1}
    assert list(WebhookEvent.objects.values()) == [first]
    message.refresh_from_db()
    assert (message.status, message.updated_at) == (MessageStatus.READ, updated)


def test_each_item_of_a_format_b_array_is_its_own_event_and_duplicates_inside_count_once(post):
    first, second = sent_message_1(), sent_message_1()
    items = failed_event(first, "max retries exceeded") + failed_event(second, "max retries exceeded")
    response = post(items + items[:1])
    assert response.json() == {"stored": 2, "rejected": 0, "duplicates": 1}
    assert WebhookEvent.objects.filter(status=EventStatus.PROCESSED).count() == 2


@pytest.mark.parametrize(
    "payload, reason",
    [
        ({"hello": "world"}, "no event name"),
        ({"event": "message:reaction", "data": {}}, "not one Relance processes"),
        ({"event": "message:out:ack", "data": "x"}, "no data object"),
        ({"event": "message:out:ack", "data": {"ack": "read"}}, "no message id"),
        ({"event": "message:in:new", "data": {"id": "ABC", "body": "hi"}}, "no sender number"),
        ([], "JSON array"),
        ("just a string", "JSON string"),
        (42, "JSON number"),
    ],
)
def test_json_that_is_not_an_event_we_understand_is_stored_rejected_with_the_reason(post, payload, reason):
    response = post(payload)
    assert response.status_code == 200
    assert response.json()["rejected"] == 1
    event = WebhookEvent.objects.get()
    assert event.status == EventStatus.REJECTED and reason in event.reason
    assert post(payload).json()["duplicates"] == 1


def test_nul_characters_and_lone_surrogates_are_replaced_so_the_event_is_kept(post):
    raw = json.dumps(reply_event("+33612345678", "Oui\u0000 \ud800merci")).encode()
    assert post(raw=raw).status_code == 200
    assert WebhookEvent.objects.get().payload["data"]["body"] == "Oui\ufffd \ufffdmerci"


def test_a_database_failure_answers_503_so_that_wassenger_retries(post, monkeypatch, settings):
    settings.ADMINS = [("Ops", "ops@example.com")]
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"

    def broken(**kwargs):
        raise RuntimeError("database unreachable")

    monkeypatch.setattr("webhooks.views.events_store", broken)
    response = post(reply_event("+33612345678", "Bonjour"))
    assert response.status_code == 503 and response["Retry-After"] == "60"
    # Not one admin email per delivery (with the secret of the URL in it): Wassenger retries.
    assert mail.outbox == []


# --- Whatever the body: never a 5xx; stored, or refused without storing --------------------------

JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | st.sampled_from(["\x00", "\ud800", "STOP", "read", "message:out:ack", "message:in:new", "+33612345678"])
    | st.just("W" * 200)
)
JSON = st.recursive(
    JSON_LEAVES,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)
HYPOTHESIS = hypothesis_settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def assert_stored_or_cleanly_refused(response, body, stored_before: int) -> dict:
    assert response.status_code in (200, 400), response.content
    answer = response.json()
    stored_now = WebhookEvent.objects.count()
    if response.status_code == 400:
        assert answer["error"] and stored_now == stored_before
        return {"stored": 0}
    items = len(body) if isinstance(body, list) and body else 1
    assert answer["stored"] + answer["rejected"] + answer["duplicates"] == items
    assert stored_now == stored_before + answer["stored"] + answer["rejected"]
    return answer


def assert_processing_raised_nothing(caplog) -> None:
    crashes = [r for r in caplog.records if r.exc_info and r.name.startswith(("webhooks", "django"))]
    assert crashes == [], crashes[0].getMessage()


@HYPOTHESIS
@given(body=JSON)
def test_any_json_body_is_stored_or_refused_never_a_server_error(post, caplog, body):
    before = WebhookEvent.objects.count()
    assert_stored_or_cleanly_refused(post(body), body, before)
    assert_processing_raised_nothing(caplog)


@HYPOTHESIS
@given(raw=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_any_bytes_are_stored_or_refused_never_a_server_error(post, raw):
    before = WebhookEvent.objects.count()
    response = post(raw=raw)
    assert response.status_code in (200, 400)
    if response.status_code == 400:
        assert WebhookEvent.objects.count() == before


@st.composite
def mutated(draw, value):
    """`value` with a few random edits: a field replaced, removed, retyped or added."""
    for _ in range(draw(st.integers(1, 4))):
        value = draw(_edit(value))
    return value


@st.composite
def _edit(draw, value):
    if isinstance(value, dict) and value:
        key = draw(st.sampled_from(sorted(value)))
        action = draw(st.sampled_from(["replace", "delete", "add", "descend", "descend"]))
        if action == "delete":
            return {k: v for k, v in value.items() if k != key}
        if action == "add":
            return {**value, draw(st.text(max_size=8)): draw(JSON)}
        inner = draw(_edit(value[key])) if action == "descend" else draw(JSON)
        return {**value, key: inner}
    if isinstance(value, list) and value:
        index = draw(st.integers(0, len(value) - 1))
        return [*value[:index], draw(_edit(value[index])), *value[index + 1 :]]
    return draw(JSON)


@pytest.fixture
def real_events():
    """One event of each kind Relance acts on, about one real message."""
    message = sent_message_1()
    phone = message.contact.phone
    return [
        ack_event(message, "delivered"),
        ack_event(message, "read", reference=False),
        {**ack_event(message, "sent"), "event": "message:out:new"},
        failed_event(message, "Phone number does not exist on WhatsApp"),
        reply_event(phone, "Oui, merci"),
        reply_event(phone, "Arrêt !"),
        session_event("offline"),
    ]


@pytest.mark.parametrize("sync", [True, False], ids=["processed-inline", "queued-with-its-task"])
@HYPOTHESIS
@given(data=st.data())
def test_mutated_real_events_are_stored_or_refused_and_processing_never_crashes(
    post, caplog, monkeypatch, real_events, sync, data
):
    monkeypatch.setattr(Conf, "SYNC", sync)
    body = data.draw(mutated(data.draw(st.sampled_from(real_events))))
    before, tasks_before = WebhookEvent.objects.count(), OrmQ.objects.count()
    answer = assert_stored_or_cleanly_refused(post(body), body, before)
    assert_processing_raised_nothing(caplog)
    assert OrmQ.objects.count() == tasks_before + (0 if sync else answer["stored"])
