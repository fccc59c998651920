"""The client against the real sandbox process on loopback, its faults, and its webhooks."""

from __future__ import annotations

import random
import socket
import threading
import uuid
from collections import Counter

import pytest
import requests
from django.core.management import CommandError, call_command

from messaging import wassenger
from messaging.wassenger import AuthError, DeviceRefused, InvalidNumber, OutcomeUnknown, RateLimited, payloads
from messaging.wassenger.sandbox.state import (
    REPLIES,
    SANDBOX_DEVICE_ID,
    SANDBOX_DEVICE_PHONE,
    STOP_REPLIES,
    Faults,
    SandboxConfig,
    Store,
    new_message,
    sandbox_fate,
    sandbox_reply_shape,
)
from messaging.wassenger.sandbox.webhooks import Scheduler, WebhookPoster
from tests import wassenger_shapes as shapes
from tests.messaging.conftest import SANDBOX_TOKEN, WEBHOOK_SEED, WEBHOOK_SHARES, start_sandbox, wait_for

pytestmark = pytest.mark.slow

PHONE = "+33612345678"


def send(phone: str = PHONE, reference: str = "") -> tuple[str, wassenger.SendResult]:
    reference = reference or str(uuid.uuid4())
    return reference, wassenger.send_message(phone=phone, reference=reference, text="Bonjour")


# --- The API ------------------------------------------------------------------------


def test_a_sent_message_can_be_read_back_by_id_and_by_reference(sandbox):
    reference, result = send()
    assert len(result.wassenger_id) == 24 and int(result.wassenger_id, 16) >= 0
    assert result.whatsapp_id and result.status == "queued"
    by_id = wassenger.get_message(result.wassenger_id)
    by_reference = wassenger.find_message_by_reference(reference)
    assert by_id.reference == by_reference.reference == reference
    assert by_reference.wassenger_id == result.wassenger_id
    (recorded,) = sandbox.messages(phone=PHONE)
    assert (recorded["reference"], recorded["message"], recorded["sandbox"]["fault"]) == (
        reference,
        "Bonjour",
        None,
    )


def test_unknown_message_id_and_reference_find_nothing(sandbox):
    assert wassenger.get_message("ffffffffffffffffffffffff") is None
    assert wassenger.find_message_by_reference(str(uuid.uuid4())) is None


def test_check_number_says_numbers_with_the_invalid_suffix_do_not_exist(sandbox):
    assert wassenger.check_number(PHONE) == wassenger.NumberCheck(PHONE, True, "33612345678@c.us")
    assert wassenger.check_number("+33612340000").exists is False


def test_a_wrong_token_is_an_auth_error_and_nothing_is_recorded(sandbox, settings):
    settings.WASSENGER_API_TOKEN = "not-the-token"
    with pytest.raises(AuthError) as caught:
        send()
    assert (caught.value.status, caught.value.error_code) == (401, "error:unauthorized")
    assert sandbox.messages() == []


def test_a_phone_that_is_not_e164_is_an_invalid_number(sandbox):
    with pytest.raises(InvalidNumber) as caught:
        send(phone="06 12 34 56 78")
    assert caught.value.status == 400
    assert sandbox.messages() == []


def test_devices_look_like_one_operative_online_device(sandbox):
    headers = {"Token": SANDBOX_TOKEN}
    (device,) = requests.get(f"{sandbox.url}/v1/devices", headers=headers, timeout=5).json()
    assert (device["id"], device["phone"], device["status"]) == (
        SANDBOX_DEVICE_ID,
        SANDBOX_DEVICE_PHONE,
        "operative",
    )
    assert device["session"]["status"] == "online"
    assert requests.get(f"{sandbox.url}/v1/devices/{SANDBOX_DEVICE_ID}", headers=headers, timeout=5).ok
    assert requests.get(f"{sandbox.url}/v1/devices/{'0' * 24}", headers=headers, timeout=5).status_code == 404
    assert requests.get(f"{sandbox.url}/v1/devices", timeout=5).status_code == 401


def test_stats_count_what_was_accepted_and_refused(sandbox):
    send()
    send(phone="+33612345679")
    with pytest.raises(InvalidNumber):
        send(phone="nope")
    stats = sandbox.control("GET", "stats")
    assert (stats["messages"], stats["phones"]) == (2, 2)
    assert stats["counts"]["accepted"] == 2 and stats["counts"]["refused_invalid"] == 1
    assert sandbox.control("DELETE", "messages") == {"deleted": 2}


# --- Faults -------------------------------------------------------------------------


def test_a_500_is_an_unknown_outcome_and_records_nothing(sandbox):
    sandbox.set_faults(error_500=1)
    with pytest.raises(OutcomeUnknown) as caught:
        send(reference="refused-500")
    assert caught.value.status == 500
    assert sandbox.messages() == []
    assert wassenger.find_message_by_reference("refused-500") is None  # the lookup says: resend


@pytest.mark.parametrize("fault, status", [("error_500_accepted", 500), ("conflict_409", 409)])
def test_a_500_or_409_after_queueing_is_an_unknown_outcome_found_by_reference(sandbox, fault, status):
    sandbox.set_faults(**{fault: 1})
    with pytest.raises(OutcomeUnknown) as caught:
        send(reference=f"queued-{status}")
    assert caught.value.status == status
    (recorded,) = sandbox.messages(reference=f"queued-{status}")
    assert recorded["sandbox"]["fault"] == fault
    sandbox.set_faults(**{fault: 0})
    assert wassenger.find_message_by_reference(f"queued-{status}").wassenger_id == recorded["id"]


@pytest.mark.parametrize(
    "fault, status, code",
    [("device_not_found", 404, "error:device_not_found"), ("queue_reject", 400, "queue:reject"),
     ("queue_freeze", 400, "queue:freeze")],
)  # fmt: skip
def test_a_refusal_of_the_device_is_device_refused_and_records_nothing(sandbox, fault, status, code):
    sandbox.set_faults(**{fault: 1})
    with pytest.raises(DeviceRefused) as caught:
        send()
    assert (caught.value.status, caught.value.error_code) == (status, code)
    assert sandbox.messages() == []
    assert sandbox.control("GET", "stats")["counts"][f"refused_{fault}"] == 1


def test_the_lookup_filters_by_an_array_of_references_a_page_at_a_time(sandbox):
    references = [send(reference=f"page-{n}")[0] for n in range(3)]
    lookup = f"{sandbox.url}/v1/messages"
    headers = {"Token": SANDBOX_TOKEN}
    both = requests.get(lookup, params={"reference": references[:2]}, headers=headers, timeout=5).json()
    assert sorted(m["reference"] for m in both) == references[:2]
    bracketed = requests.get(lookup, params={"reference[]": references[2]}, headers=headers, timeout=5).json()
    assert [m["reference"] for m in bracketed] == [references[2]]
    pages = [
        requests.get(lookup, params={"page": page, "size": 2}, headers=headers, timeout=5).json()
        for page in (0, 1)
    ]
    assert [len(p) for p in pages] == [2, 1]
    assert all("sandbox" not in m for m in both)


@pytest.mark.parametrize("with_header, expected", [(1, 2.0), (0, None)])
def test_a_429_is_rate_limited_with_or_without_retry_after(sandbox, with_header, expected):
    sandbox.set_faults(rate_limit_429=1, rate_limit_retry_after=with_header, retry_after_seconds=2)
    with pytest.raises(RateLimited) as caught:
        send()
    assert (caught.value.status, caught.value.retry_after) == (429, expected)
    assert sandbox.messages() == []


def test_a_slow_answer_is_outcome_unknown_but_the_message_was_accepted(sandbox):
    sandbox.set_faults(slow=1)
    with pytest.raises(OutcomeUnknown, match="ReadTimeout"):
        send(reference="slow-one")
    (recorded,) = sandbox.messages(reference="slow-one")
    assert recorded["sandbox"]["fault"] == "slow"
    # Reconciliation: the lost send is found by its reference.
    sandbox.set_faults(slow=0)
    assert wassenger.find_message_by_reference("slow-one").wassenger_id == recorded["id"]


def test_a_dropped_connection_is_outcome_unknown_but_the_message_was_accepted(sandbox):
    sandbox.set_faults(drop_after_read=1)
    with pytest.raises(OutcomeUnknown, match="ConnectionError"):
        send(reference="dropped-one")
    (recorded,) = sandbox.messages(reference="dropped-one")
    assert recorded["sandbox"]["fault"] == "drop_after_read"


def test_a_connection_dropped_before_acceptance_is_outcome_unknown_and_nothing_was_sent(sandbox):
    sandbox.set_faults(drop_before_accept=1)
    with pytest.raises(OutcomeUnknown, match="ConnectionError"):
        send(reference="never-taken")
    assert sandbox.messages() == []
    sandbox.set_faults(drop_before_accept=0)
    assert wassenger.find_message_by_reference("never-taken") is None


def test_the_send_log_lists_every_request_with_its_fault_in_order(sandbox):
    sandbox.set_faults(rate_limit_429=1, rate_limit_retry_after=1, retry_after_seconds=2)
    with pytest.raises(RateLimited):
        send(reference="logged")
    sandbox.set_faults(rate_limit_429=0)
    send(reference="logged")
    first, second = sandbox.control("GET", "sends", params={"reference": "logged"})
    assert (first["fault"], first["retry_after"], second["fault"]) == ("rate_limit_429", 2.0, None)
    assert first["at"] <= second["at"] and first["phone"] == second["phone"]


def test_fault_shares_mix_in_the_given_proportions(sandbox):
    sandbox.set_faults(error_500=0.25, rate_limit_429=0.25)
    outcomes = []
    for _ in range(80):
        try:
            send()
            outcomes.append("ok")
        except (OutcomeUnknown, RateLimited) as error:
            outcomes.append(type(error).__name__)
    assert 10 <= outcomes.count("OutcomeUnknown") <= 30 and 10 <= outcomes.count("RateLimited") <= 30
    assert len(sandbox.messages()) == outcomes.count("ok")


@pytest.mark.parametrize(
    "faults", [{"error_500": 1.5}, {"surprise": 0.1}, {"slow": "lots"}, {"error_500": 0.6, "slow": 0.6}]
)
def test_the_fault_endpoint_refuses_nonsense(sandbox, faults):
    answer = requests.post(f"{sandbox.url}/sandbox/faults", json=faults, timeout=5)
    assert answer.status_code == 400
    assert answer.json()["errorCode"] == "error:invalid_faults"


def test_the_same_seed_draws_the_same_faults():
    faults = Faults(error_500=0.3, rate_limit_429=0.3, slow=0.1)
    first, second = random.Random(5), random.Random(5)
    assert [faults.pick(first) for _ in range(50)] == [faults.pick(second) for _ in range(50)]


def test_the_command_refuses_impossible_flags():
    with pytest.raises(CommandError, match="share between 0 and 1"):
        call_command("wassenger_sandbox", "--port", "0", "--fail-500", "2")


# --- Webhooks -----------------------------------------------------------------------


def phone_with_fate(fate: str) -> str:
    """A fresh phone the sandbox will treat as `fate` (silent, reply or stop)."""
    while True:
        phone = f"+3361{random.randrange(10**7):07d}"
        if not phone.endswith("0000") and sandbox_fate(phone, seed=WEBHOOK_SEED, **WEBHOOK_SHARES) == fate:
            return phone


def _ours(events: list[dict], phone: str, side: str) -> list[dict]:
    return [e for e in events if e["data"].get(side) == phone]


def test_webhooks_carry_acks_replies_stop_words_and_failures(webhook_sandbox, webhook_receiver):
    phones = {fate: phone_with_fate(fate) for fate in ("silent", "reply", "stop")}
    invalid = f"+3361{random.randrange(10**3):03d}0000"
    sent = {fate: send(phone) for fate, phone in {**phones, "invalid": invalid}.items()}
    # out:new and 2 acks for each valid phone, one reply each from "reply" and "stop", one failure.
    wait_for(lambda: len(webhook_receiver.received) >= 12, timeout=10)
    acks, news = webhook_receiver.events("message:out:ack"), webhook_receiver.events("message:out:new")
    for fate, phone in phones.items():
        _, result = sent[fate]
        mine = _ours(acks, phone, "toNumber")
        assert [e["ack"] for e in mine] == ["delivered", "read"]
        (new,) = _ours(news, phone, "toNumber")
        assert all(e["id"] == e["data"]["id"] == result.whatsapp_id for e in [new, *mine])
        assert all(e["data"]["flow"] == "outbound" and "reference" not in e["data"] for e in [new, *mine])
    replies = webhook_receiver.events("message:in:new")
    assert _ours(replies, phones["silent"], "toNumber") + _ours(replies, phones["silent"], "fromNumber") == []
    reply, stop = (_from(replies, phones[fate]) for fate in ("reply", "stop"))
    assert reply["data"]["body"] in REPLIES and stop["data"]["body"] in STOP_REPLIES
    assert reply["data"]["flow"] == "inbound" and reply["data"]["meta"]["isGroup"] is False
    (failed,) = webhook_receiver.events("message:out:failed")
    assert failed["entityId"] == failed["data"]["id"] == sent["invalid"][1].wassenger_id
    assert failed["data"]["deliveryStatus"] == "failed" and failed["data"]["failureReason"]
    assert "reference" not in failed["data"]
    assert _ours(acks, invalid, "toNumber") == _ours(news, invalid, "toNumber") == []
    assert set(webhook_receiver.queries) == {"secret=s3cret"}
    assert [shapes.event_problems(body) for body in webhook_receiver.received] == [[]] * 12
    # Every event names the account's plan as GET /v1/devices does.
    devices = requests.get(f"{webhook_sandbox.url}/v1/devices", headers={"Token": SANDBOX_TOKEN}, timeout=5)
    (device,) = devices.json()
    assert {event["device"]["plan"] for event in acks + news + replies} == {device["plan"]}


def _from(replies: list[dict], phone: str) -> dict:
    """The one inbound message from `phone`: its chat names the contact, whatever the shape."""
    (reply,) = [e for e in replies if e["data"]["chat"]["contact"]["phone"] == phone]
    shape = sandbox_reply_shape(phone, seed=WEBHOOK_SEED, spec_shape_share=0.5)
    device = SANDBOX_DEVICE_PHONE
    sender, receiver = (device, phone) if shape == "spec" else (phone, device)
    assert (reply["data"]["fromNumber"], reply["data"]["toNumber"]) == (sender, receiver)
    assert reply["device"]["phone"] == device
    assert payloads.inbound_contact_number(reply) == phone and payloads.inbound_kind(reply["data"]) == ""
    return reply


def test_replies_come_in_both_shapes_in_the_configured_share():
    shares = Counter(sandbox_reply_shape(f"+336{n:08d}", seed=3, spec_shape_share=0.3) for n in range(4000))
    assert 0.27 < shares["spec"] / 4000 < 0.33
    assert {
        sandbox_reply_shape(f"+336{n:08d}", seed=3, spec_shape_share=s) for n in range(50) for s in (0, 1)
    } == {
        "spec",
        "contact",
    }
    assert sandbox_reply_shape("+33612345678", seed=3, spec_shape_share=0) == "contact"


@pytest.fixture
def group_sandbox(webhook_receiver):
    server = start_sandbox(
        "--webhook-url", f"{webhook_receiver.url}", "--seed", "5", "--reply-share", "0", "--group-share", "1",
        "--receipt-reference", "--sent-delay", "0.02", "--delivered-delay", "0.02", "--read-delay", "0.02",
        "--reply-delay", "0.02",
    )  # fmt: skip
    yield server
    server.stop()


def test_a_contact_can_write_in_a_group_and_receipts_can_carry_the_reference(
    group_sandbox, webhook_receiver, settings
):
    settings.WASSENGER_API_URL, settings.WASSENGER_API_TOKEN = f"{group_sandbox.url}/v1", SANDBOX_TOKEN
    phone = phone_with_fate("silent")
    reference, _ = send(phone)
    wait_for(lambda: webhook_receiver.events("message:in:new"), timeout=10)
    (group,) = webhook_receiver.events("message:in:new")
    assert payloads.inbound_kind(group["data"]) == "group"
    assert group["data"]["chat"]["id"].endswith("@g.us") and group["data"]["meta"]["isGroup"] is True
    assert group["data"]["fromNumber"] == phone  # as close to a reply as it gets
    acks = webhook_receiver.events("message:out:ack")
    assert acks and all(e["data"]["reference"] == reference for e in acks)
    assert group_sandbox.control("GET", "stats")["counts"]["group_messages"] == 1
    referenced = [".data.reference: not in the documented shape"]  # what --receipt-reference adds
    for body in webhook_receiver.received:
        assert shapes.event_problems(body) == ([] if body["event"] == "message:in:new" else referenced)


def test_the_message_state_follows_its_acks(webhook_sandbox, webhook_receiver):
    phone = phone_with_fate("silent")
    _, result = send(phone)
    wait_for(lambda: wassenger.get_message(result.wassenger_id).delivery_status == "read")
    (recorded,) = webhook_sandbox.messages(phone=phone)
    assert recorded["sandbox"]["events"] == ["sent", "delivered", "read"]
    assert recorded["status"] == "processed" and recorded["sentAt"]


def test_a_refused_webhook_is_retried_with_backoff(webhook_sandbox, webhook_receiver):
    webhook_receiver.refuse_first = 2
    phone = phone_with_fate("silent")
    send(phone)
    wait_for(lambda: len(_ours(webhook_receiver.events("message:out:ack"), phone, "toNumber")) == 2)
    assert webhook_receiver.refused == 2
    assert webhook_sandbox.control("GET", "stats")["counts"]["webhook_attempts_failed"] == 2


def test_an_unreachable_webhook_is_given_up_without_harm():
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/webhooks/wassenger/"
    store, scheduler, done = Store(), Scheduler(), threading.Event()
    config = SandboxConfig(token="t", webhook_url=url, webhook_retries=2, webhook_backoff=0.01)
    poster = WebhookPoster(config, scheduler, store)
    try:
        poster.post({"event": "message:out:ack"}, then=done.set)
        assert done.wait(5)
    finally:
        scheduler.stop()
        poster.close()
    assert store.stats()["counts"] == {"webhook_attempts_failed": 3, "webhooks_given_up": 1}


def test_the_scheduler_runs_callbacks_in_time_order():
    scheduler, ran, done = Scheduler(), [], threading.Event()
    try:
        for delay, name in [(0.06, "c"), (0.0, "a"), (0.03, "b")]:
            scheduler.call_later(delay, lambda name=name: ran.append(name))
        scheduler.call_later(0.07, done.set)
        assert done.wait(2)
    finally:
        scheduler.stop()
    assert ran == ["a", "b", "c"]


def test_fates_follow_the_configured_shares():
    fates = [sandbox_fate(f"+336{n:08d}", seed=3, reply_share=0.4, stop_share=0.25) for n in range(4000)]
    replying = len(fates) - fates.count("silent")
    assert 0.37 < replying / len(fates) < 0.43
    assert 0.21 < fates.count("stop") / replying < 0.29
    assert fates == [
        sandbox_fate(f"+336{n:08d}", seed=3, reply_share=0.4, stop_share=0.25) for n in range(4000)
    ]


def test_a_sandbox_started_again_with_its_state_file_remembers_what_it_took(tmp_path):
    path = str(tmp_path / "wassenger.json")
    before = Store()
    message = new_message(
        {"phone": "+33612345678", "reference": "r-1"}, device_id="d", fault=None, fate="silent"
    )
    before.add(message)
    before.log_send({"phone": "+33612345678", "reference": "r-1"}, None, None)
    before.save(path)
    after = Store()
    assert after.load(path) == 1
    assert after.find(reference="r-1")[0]["id"] == message["id"]
    assert [s["reference"] for s in after.sends()] == ["r-1"]
    assert after.stats()["counts"] == {"accepted": 1}
    assert Store().load(str(tmp_path / "none.json")) == 0  # a first start: nothing to load
