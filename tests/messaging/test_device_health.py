"""What Wassenger says of a number (session, status, plan) decides whether it sends."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from messaging.devices import (
    SESSION_REASONS,
    device_session_apply,
    device_status_apply,
    plan_events,
    plan_warnings,
    session_halt_reason,
)
from messaging.models import Device
from tests.factories import make_device

SPEC_SESSIONS = ["online", *SESSION_REASONS]


def test_the_spec_enum_is_covered():
    assert set(SESSION_REASONS) == {
        "offline", "timeout", "timeout_sync", "conflict", "blocked", "error", "authorize",
        "authorizing", "new", "loading", "offline:panel", "offline:modal",
    }  # fmt: skip


@given(st.one_of(st.sampled_from(SPEC_SESSIONS), st.text(max_size=40)))
def test_every_session_status_either_sends_or_halts_with_a_reason(status):
    reason = session_halt_reason(status)
    assert (reason is None) == (status.strip().lower() == "online")
    assert reason is None or reason.startswith("session ") and len(reason) > len("session x: ")


@pytest.mark.django_db
@pytest.mark.parametrize("status", ["banned", "removed", "disabled", "unpaid"])
def test_a_banned_removed_disabled_or_unpaid_device_is_halted(status):
    device = make_device()
    assert device_status_apply(device_id=device.pk, status=status) == "halted"
    device.refresh_from_db()
    assert device.halted_reason.startswith(f"device {status}: ")


@pytest.mark.django_db
def test_a_ban_replaces_the_reason_of_a_session_halt_and_online_does_not_lift_it(settings):
    device = make_device()
    device_session_apply(device_id=device.pk, status="offline")
    device_status_apply(device_id=device.pk, status="banned")
    assert device_session_apply(device_id=device.pk, status="online") == "online"
    device.refresh_from_db()
    assert device.halted_reason == "device banned: number banned"


@pytest.mark.django_db
def test_an_operative_device_lifts_only_a_status_halt():
    device = make_device()
    device_status_apply(device_id=device.pk, status="unpaid")
    assert device_status_apply(device_id=device.pk, status="operative") == "resumed"
    assert Device.objects.get(pk=device.pk).halted_at is None


@pytest.mark.parametrize(
    ("plan", "inbound", "acks", "warns"),
    [
        ("wa-gateway", False, False, "no Message 2, no STOP"),
        ("io-professional", True, False, "no delivery or read receipts"),
        ("io-business", True, True, ""),
        ("io-enterprise", True, True, ""),
        ("", True, True, ""),
    ],
)
def test_a_plan_decides_which_events_are_registered_and_what_the_operator_is_told(plan, inbound, acks, warns):
    events = plan_events(plan)
    assert ("message:in:new" in events, "message:out:ack" in events) == (inbound, acks)
    assert "number:session" in events
    assert warns in " ".join(plan_warnings(plan)) and bool(plan_warnings(plan)) == bool(warns)
