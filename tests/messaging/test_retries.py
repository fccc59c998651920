"""The retry table: each outcome leads to exactly the documented next state and delay."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from messaging import wassenger
from messaging.models import AttemptOutcome, MessageStatus
from messaging.retries import breaker_wait, next_step, retry_delay

NOW = datetime(2026, 3, 29, 12, 0, tzinfo=UTC)


def test_the_delay_before_attempt_n_plus_1_is_60_times_2_to_the_n_minus_1():
    assert [retry_delay(n).total_seconds() for n in (1, 2, 3)] == [60, 120, 240]


@given(attempts=st.integers(min_value=1, max_value=20))
def test_the_delay_doubles_with_each_attempt(attempts):
    assert retry_delay(attempts + 1) == 2 * retry_delay(attempts)


def test_accepted_means_sent():
    step = next_step(None, attempts_made=1, now=NOW)
    assert (step.outcome, step.status, step.retry_at) == (AttemptOutcome.ACCEPTED, MessageStatus.SENT, None)
    assert not step.surely_not_sent


@pytest.mark.parametrize("attempts", [1, 2, 3])
def test_a_transient_error_keeps_the_message_in_place_and_its_attempt_and_opens_the_breaker(attempts):
    step = next_step(wassenger.Transient("bad gateway", status=502), attempts_made=attempts, now=NOW)
    assert (step.status, step.retry_at, step.refund_attempt) == (MessageStatus.PENDING, NOW, True)
    assert step.surely_not_sent and step.link_failed and step.link_wait_at_least is None


@pytest.mark.parametrize(("retry_after", "device_wait"), [(None, 60), (5, 60), (90, 90)])
def test_a_rate_limit_waits_at_least_60_s_or_retry_after_and_costs_no_attempt(retry_after, device_wait):
    error = wassenger.RateLimited("slow down", status=429, retry_after=retry_after)
    step = next_step(error, attempts_made=3, now=NOW)
    assert (step.status, step.retry_at, step.refund_attempt) == (MessageStatus.PENDING, NOW, True)
    assert step.link_failed and step.link_wait_at_least == timedelta(seconds=device_wait)


def test_the_breaker_doubles_its_wait_up_to_the_ceiling():
    assert [breaker_wait(n).total_seconds() for n in range(1, 8)] == [60, 120, 240, 480, 960, 1800, 1800]
    assert breaker_wait(10_000).total_seconds() == 1800


@given(failures=st.integers(min_value=1, max_value=100))
def test_the_breaker_never_waits_less_than_the_base_nor_more_than_the_ceiling(failures):
    assert 60 <= breaker_wait(failures).total_seconds() <= 1800
    assert breaker_wait(failures + 1) >= breaker_wait(failures)


def test_a_timeout_is_a_sign_about_the_link_a_500_is_not():
    assert next_step(wassenger.OutcomeUnknown("read timeout"), attempts_made=1, now=NOW).link_failed
    assert not next_step(wassenger.OutcomeUnknown("boom", status=500), attempts_made=1, now=NOW).link_failed


def test_an_invalid_number_fails_at_once_and_marks_the_contact():
    step = next_step(wassenger.InvalidNumber("phone not found", status=400), attempts_made=1, now=NOW)
    assert (step.status, step.contact_invalid, step.retry_at) == (MessageStatus.FAILED, True, None)


def test_an_auth_error_halts_the_device_and_keeps_the_message_for_later():
    step = next_step(wassenger.AuthError("bad token", status=401), attempts_made=3, now=NOW)
    assert (step.status, step.halt_device, step.refund_attempt) == (MessageStatus.PENDING, True, True)


def test_an_unknown_outcome_is_never_retried_directly():
    step = next_step(wassenger.OutcomeUnknown("read timeout"), attempts_made=1, now=NOW)
    assert (step.status, step.retry_at, step.surely_not_sent) == (MessageStatus.UNKNOWN, None, False)


def test_a_permanent_refusal_fails_without_retry():
    step = next_step(wassenger.Rejected("conflict", status=409), attempts_made=1, now=NOW)
    assert (step.status, step.retry_at) == (MessageStatus.FAILED, None)
