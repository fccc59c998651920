"""Pacing rules, for every policy and every sequence of events (pure: no database)."""

import time as wall_clock
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from fractions import Fraction
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from messaging.pacing import (
    Action,
    Decision,
    DeviceState,
    Kind,
    PacingPolicy,
    next_utc_midnight,
    pacing_decide,
    pacing_estimate_finish,
    pacing_record_send,
    pacing_record_wait,
    pacing_remaining_today,
    reserve_for,
)

DEFAULT = PacingPolicy(
    gap_seconds=25, batch_size=25, batch_pause_seconds=300, daily_limit=1000, message_2_reserve=0
)
# 2026-03-29: clocks go forward in Europe that night; UTC, and so pacing, must not notice.
DST_DAY = datetime(2026, 3, 29, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
HYPOTHESIS = settings(max_examples=200, deadline=None)


# --- drivers ---------------------------------------------------------------------------------


def decide(policy, state, now, kind=Kind.MESSAGE_1) -> Decision:
    return pacing_decide(policy=policy, state=state, now=now, kind=kind)


def send(policy, state, now, kind=Kind.MESSAGE_1) -> DeviceState:
    return pacing_record_send(policy=policy, state=state, now=now, kind=kind)


def send_greedily(policy, state, now, count, kind=Kind.MESSAGE_1):
    """Send `count` messages as soon as allowed; return the send times and the final state."""
    times = []
    while len(times) < count:
        decision = decide(policy, state, now, kind)
        if decision.action is Action.SEND:
            state = send(policy, state, now, kind)
            times.append(now)
        now = decision.not_before
    return times, state


def simulate_finish(policy, state, now, message_1, message_2=0) -> datetime:
    """The estimate's reference: one decision at a time, Message 2 first."""
    last = now
    pending = {Kind.MESSAGE_1: message_1, Kind.MESSAGE_2: message_2}
    for _ in range(10 * (message_1 + message_2) + 10):
        kind = Kind.MESSAGE_2 if pending[Kind.MESSAGE_2] else Kind.MESSAGE_1
        if not pending[kind]:
            return last
        decision = decide(policy, state, now, kind)
        if decision.action is Action.SEND:
            state, last, pending[kind] = send(policy, state, now, kind), now, pending[kind] - 1
        now = decision.not_before
    raise AssertionError("the step-by-step simulation did not finish")


def estimate(policy, state, now, message_1, message_2=0) -> datetime:
    return pacing_estimate_finish(
        policy=policy, state=state, now=now, message_1=message_1, message_2=message_2
    )


@dataclass
class Trace:
    """What happened while arbitrary steps were played against the pacing rules."""

    state: DeviceState
    now: datetime
    sends: list[tuple[datetime, Kind]] = field(default_factory=list)
    refusals: list[tuple[DeviceState, datetime, Kind, Decision]] = field(default_factory=list)


def play(policy, start, steps) -> Trace:
    """A send is attempted only when pacing says SEND; 'wait' jumps to the reported time."""
    trace = Trace(DeviceState(), start)
    for kind, move in steps:
        if isinstance(move, tuple) and move[0] == "rate_limit":  # as a 429 would impose
            until = trace.now + timedelta(seconds=move[1])
            trace.state = pacing_record_wait(state=trace.state, until=until)
        elif isinstance(move, tuple):  # to just before midnight, where days and pauses overlap
            trace.now = max(trace.now, next_utc_midnight(trace.now) - timedelta(seconds=move[1]))
        elif isinstance(move, int):
            trace.now += timedelta(seconds=move)
        else:
            play_decision(policy, trace, kind, move)
    return trace


def play_decision(policy, trace, kind, move) -> None:
    decision = decide(policy, trace.state, trace.now, kind)
    if decision.action is not Action.SEND:
        trace.refusals.append((trace.state, trace.now, kind, decision))
        if move in ("wait", "wait_then_send"):
            trace.now = decision.not_before
            decision = decide(policy, trace.state, trace.now, kind)
    if decision.action is Action.SEND and move in ("send", "wait_then_send"):
        trace.state = send(policy, trace.state, trace.now, kind)
        trace.sends.append((trace.now, kind))


# --- strategies ------------------------------------------------------------------------------

# Short gaps as in production, and long ones so that a day's sends spill past midnight.
seconds = st.one_of(
    st.integers(0, 120),
    st.floats(0, 120, allow_nan=False, allow_infinity=False),
    st.integers(0, 4 * 3600),
)


@st.composite
def policies(draw) -> PacingPolicy:
    daily_limit = draw(st.one_of(st.integers(0, 5), st.integers(0, 30)))
    return PacingPolicy(
        gap_seconds=draw(seconds),
        batch_size=draw(st.integers(1, 6)),
        batch_pause_seconds=draw(st.one_of(seconds, st.integers(0, 6 * 3600))),
        daily_limit=daily_limit,
        message_2_reserve=draw(st.integers(0, daily_limit)),
    )


# Starting shortly before midnight (and across the DST night) makes every trace cross it.
starts = st.integers(-4 * 3600, 3600).map(lambda offset: DST_DAY + timedelta(seconds=offset))
# Mostly sends, so that batches fill and daily limits are reached within a short trace.
decisions = st.sampled_from(["send", "wait", "wait_then_send", "wait_then_send", "wait_then_send"])
moves = st.one_of(
    decisions,
    decisions,
    decisions,
    decisions,
    st.integers(1, 6 * 3600),
    st.tuples(st.just("rate_limit"), st.integers(1, 3600)),
    st.tuples(st.just("before_midnight"), st.integers(0, 3600)),
)
steps = st.lists(st.tuples(st.sampled_from(Kind), moves), min_size=10, max_size=80)


# --- invariants, for every policy and every sequence of steps --------------------------------


@HYPOTHESIS
@given(policy=policies(), start=starts, steps=steps)
def test_two_sends_are_never_closer_than_the_gap(policy, start, steps):
    times = [at for at, _ in play(policy, start, steps).sends]
    assert all(later - earlier >= policy.gap for earlier, later in pairwise(times))


@HYPOTHESIS
@given(policy=policies(), start=starts, steps=steps)
def test_after_a_full_batch_the_next_send_waits_at_least_the_pause(policy, start, steps):
    times = [at for at, _ in play(policy, start, steps).sends]
    pause = timedelta(seconds=policy.batch_pause_seconds)
    batch_ends = range(policy.batch_size - 1, len(times) - 1, policy.batch_size)
    assert all(times[end + 1] - times[end] >= pause for end in batch_ends)


@HYPOTHESIS
@given(policy=policies(), start=starts, steps=steps)
def test_never_more_than_the_daily_limit_sends_per_utc_day(policy, start, steps):
    per_day = Counter(at.date() for at, _ in play(policy, start, steps).sends)
    assert all(count <= policy.daily_limit for count in per_day.values())


@HYPOTHESIS
@given(policy=policies(), start=starts, steps=steps)
def test_message_1_never_eats_into_the_message_2_reserve(policy, start, steps):
    sends = play(policy, start, steps).sends
    per_day = Counter(at.date() for at, kind in sends if kind is Kind.MESSAGE_1)
    assert all(count <= policy.daily_limit - policy.message_2_reserve for count in per_day.values())


@HYPOTHESIS
@given(policy=policies(), start=starts, steps=steps)
def test_a_refusal_reports_exactly_the_first_moment_a_send_is_allowed(policy, start, steps):
    for state, now, kind, decision in play(policy, start, steps).refusals:
        assert decision.not_before > now
        if decision.action in (Action.WAIT, Action.BATCH_PAUSE):
            # BATCH_PAUSE names a stored pause as the reason, WAIT the gap since the last send.
            paused = decision.not_before == state.paused_until
            assert (decision.action is Action.BATCH_PAUSE) == paused
        # Safe: a moment earlier is still refused ...
        just_before = max(now, decision.not_before - MICROSECOND)
        assert decide(policy, state, just_before, kind).action is not Action.SEND
        # ... and tight: at the reported time it sends, unless this kind may never be sent.
        at_that_time = decide(policy, state, decision.not_before, kind)
        if policy.allowance(kind) > 0:
            assert at_that_time == Decision(Action.SEND, decision.not_before)
        else:
            assert at_that_time.action is Action.DAILY_LIMIT


@HYPOTHESIS
@given(
    policy=policies(),
    start=starts,
    steps=steps,
    idle=st.integers(0, 3 * 3600),
    message_1=st.integers(0, 40),
    message_2=st.integers(0, 40),
)
def test_the_estimate_equals_a_step_by_step_simulation(
    policy,
    start,
    steps,
    idle,
    message_1,
    message_2,
):
    trace = play(policy, start, steps)  # mid-batch, mid-pause, part of the day's quota used
    now = trace.now + timedelta(seconds=idle)
    if (message_1 and policy.allowance(Kind.MESSAGE_1) == 0) or (
        message_2 and policy.allowance(Kind.MESSAGE_2) == 0
    ):
        with pytest.raises(ValueError, match="can never be sent"):
            estimate(policy, trace.state, now, message_1, message_2)
        return
    simulated = simulate_finish(policy, trace.state, now, message_1, message_2)
    estimated = estimate(policy, trace.state, now, message_1, message_2)
    assert estimated >= simulated  # never promises the operator an earlier end ...
    assert estimated == simulated  # ... and is exact for the greedy schedule


# --- the default policy: 25 s, batches of 25, 5 min pause, 1000 a day ------------------------


def test_a_batch_of_25_sends_takes_24_gaps():
    times, _ = send_greedily(DEFAULT, DeviceState(), DST_DAY, 25)
    assert times[-1] - times[0] == 24 * timedelta(seconds=25)
    assert all(later - earlier == timedelta(seconds=25) for earlier, later in pairwise(times))


def test_the_26th_send_waits_until_the_batch_pause_ends():
    times, state = send_greedily(DEFAULT, DeviceState(), DST_DAY, 25)
    pause_end = times[-1] + timedelta(seconds=300)
    assert decide(DEFAULT, state, times[-1]) == Decision(Action.BATCH_PAUSE, pause_end)
    assert decide(DEFAULT, state, pause_end - MICROSECOND).action is Action.BATCH_PAUSE
    assert decide(DEFAULT, state, pause_end) == Decision(Action.SEND, pause_end)


def test_a_send_within_the_gap_waits_for_it():
    state = send(DEFAULT, DeviceState(), DST_DAY)
    later = DST_DAY + timedelta(seconds=10)
    assert decide(DEFAULT, state, later) == Decision(Action.WAIT, DST_DAY + timedelta(seconds=25))


def test_after_1000_sends_the_next_waits_until_utc_midnight():
    times, state = send_greedily(DEFAULT, DeviceState(), DST_DAY, 1000)
    assert times[-1] == DST_DAY + timedelta(hours=9, minutes=55)
    next_day = DST_DAY + timedelta(days=1)
    for kind in Kind:
        assert decide(DEFAULT, state, times[-1], kind) == Decision(Action.DAILY_LIMIT, next_day)
    assert decide(DEFAULT, state, next_day) == Decision(Action.SEND, next_day)


def test_a_pause_running_past_midnight_outlasts_the_daily_limit():
    policy = PacingPolicy(
        gap_seconds=25, batch_size=2, batch_pause_seconds=3600, daily_limit=2, message_2_reserve=0
    )
    late = DST_DAY - timedelta(minutes=10)
    times, state = send_greedily(policy, DeviceState(), late, 2)
    pause_end = times[-1] + timedelta(hours=1)
    assert decide(policy, state, times[-1]) == Decision(Action.DAILY_LIMIT, pause_end)
    assert estimate(policy, DeviceState(), late, 3) == pause_end


def test_counters_reset_at_the_utc_midnight_boundary():
    state = DeviceState(day=DST_DAY.date(), message_1_today=1000)
    last_moment = DST_DAY + timedelta(days=1) - MICROSECOND
    assert decide(DEFAULT, state, last_moment).action is Action.DAILY_LIMIT
    assert decide(DEFAULT, state, last_moment + MICROSECOND).action is Action.SEND
    after = send(DEFAULT, state, last_moment + MICROSECOND)
    assert (after.day, after.message_1_today, after.message_2_today) == (date(2026, 3, 30), 1, 0)


def test_the_day_is_the_utc_date_not_the_local_one():
    paris = ZoneInfo("Europe/Paris")
    # 01:30 in Paris on the 30th is still the 29th in UTC, so the 29th's counters apply.
    state = DeviceState(day=date(2026, 3, 29), message_1_today=1000)
    local = datetime(2026, 3, 30, 1, 30, tzinfo=paris)
    assert decide(DEFAULT, state, local) == Decision(Action.DAILY_LIMIT, DST_DAY + timedelta(1))
    assert next_utc_midnight(local) == datetime(2026, 3, 30, tzinfo=UTC)


def test_a_gap_across_the_dst_switch_is_measured_in_real_seconds():
    paris = ZoneInfo("Europe/Paris")
    just_before_switch = datetime(2026, 3, 29, 1, 59, 50, tzinfo=paris)  # 00:59:50 UTC
    state = send(DEFAULT, DeviceState(), just_before_switch)
    decision = decide(DEFAULT, state, just_before_switch)
    assert decision.not_before == datetime(2026, 3, 29, 1, 0, 15, tzinfo=UTC)


# --- Message 2 reserve -----------------------------------------------------------------------


def test_message_1_stops_at_the_reserve_while_message_2_may_use_the_whole_limit():
    policy = PacingPolicy(
        gap_seconds=0, batch_size=100, batch_pause_seconds=0, daily_limit=10, message_2_reserve=3
    )
    _, state = send_greedily(policy, DeviceState(), DST_DAY, 7)
    assert decide(policy, state, DST_DAY).action is Action.DAILY_LIMIT
    times, state = send_greedily(policy, state, DST_DAY, 3, Kind.MESSAGE_2)
    assert times == [DST_DAY] * 3
    assert decide(policy, state, DST_DAY, Kind.MESSAGE_2).action is Action.DAILY_LIMIT


def test_message_2_sent_first_leaves_message_1_only_what_the_limit_leaves():
    policy = PacingPolicy(
        gap_seconds=0, batch_size=100, batch_pause_seconds=0, daily_limit=10, message_2_reserve=3
    )
    state = DeviceState(day=DST_DAY.date(), message_2_today=9)
    assert pacing_remaining_today(policy=policy, state=state, now=DST_DAY, kind=Kind.MESSAGE_1) == 1


@pytest.mark.parametrize(
    ("daily_limit", "share", "reserve"),
    [
        (1000, 0.1, 100),
        (100, 0.07, 7),  # 100 * 0.07 is 7.000000000000001 in floats: must not become 8
        (10, 0.01, 1),  # rounded up
        (1000, 0, 0),
        (10, 1.5, 10),
        (10, -0.2, 0),
        (10, Fraction(1, 3), 4),
        (0, 0.5, 0),
    ],
)
def test_reserve_for_rounds_a_share_of_the_limit_up_and_keeps_it_in_bounds(
    daily_limit,
    share,
    reserve,
):
    assert reserve_for(daily_limit, share) == reserve


# --- estimates -------------------------------------------------------------------------------


def test_2600_messages_from_the_dst_night_take_three_utc_days():
    finish = estimate(DEFAULT, DeviceState(), DST_DAY, 2600)
    # Day 3 sends the last 600: 599 gaps and 23 pauses after 05:55:00.
    assert finish == datetime(2026, 3, 31, 5, 55, tzinfo=UTC)
    assert finish == simulate_finish(DEFAULT, DeviceState(), DST_DAY, 2600)


def test_the_estimate_is_now_when_nothing_is_pending():
    assert estimate(DEFAULT, DeviceState(), DST_DAY, 0) == DST_DAY


def test_the_estimate_counts_what_was_already_sent_today():
    state = DeviceState(day=DST_DAY.date(), message_1_today=999, last_sent_at=DST_DAY)
    assert estimate(DEFAULT, state, DST_DAY + timedelta(hours=1), 2) == DST_DAY + timedelta(1)


def test_the_estimate_for_a_million_messages_is_computed_per_day_not_per_send():
    began = wall_clock.perf_counter()
    finish = estimate(DEFAULT, DeviceState(), DST_DAY, 1_000_000)
    # One send at a time this would take seconds; a day at a time it takes milliseconds.
    assert wall_clock.perf_counter() - began < 1.0
    assert finish == DST_DAY + timedelta(days=999, hours=9, minutes=55)


def test_the_estimate_refuses_a_device_with_a_daily_limit_of_zero():
    policy = PacingPolicy(
        gap_seconds=25, batch_size=25, batch_pause_seconds=300, daily_limit=0, message_2_reserve=0
    )
    next_day = DST_DAY + timedelta(days=1)
    assert decide(policy, DeviceState(), DST_DAY) == Decision(Action.DAILY_LIMIT, next_day)
    with pytest.raises(ValueError, match="can never be sent"):
        estimate(policy, DeviceState(), DST_DAY, 1)
    with pytest.raises(ValueError, match="can never be sent"):
        estimate(policy, DeviceState(), DST_DAY, 0, 1)


def test_the_estimate_refuses_message_1_when_the_reserve_takes_the_whole_limit():
    policy = PacingPolicy(
        gap_seconds=25, batch_size=25, batch_pause_seconds=300, daily_limit=5, message_2_reserve=5
    )
    with pytest.raises(ValueError, match="can never be sent"):
        estimate(policy, DeviceState(), DST_DAY, 1)
    # Message 2 alone still has the whole limit.
    assert estimate(policy, DeviceState(), DST_DAY, 0, 2) == DST_DAY + timedelta(seconds=25)


def test_the_estimate_rejects_negative_counts():
    with pytest.raises(ValueError, match=">= 0"):
        estimate(DEFAULT, DeviceState(), DST_DAY, -1)


# --- degenerate policies ---------------------------------------------------------------------


def test_gap_and_pause_of_zero_send_a_whole_day_at_once():
    policy = PacingPolicy(
        gap_seconds=0, batch_size=1, batch_pause_seconds=0, daily_limit=3, message_2_reserve=0
    )
    times, _ = send_greedily(policy, DeviceState(), DST_DAY, 7)
    assert times == [DST_DAY] * 3 + [DST_DAY + timedelta(1)] * 3 + [DST_DAY + timedelta(2)]
    assert estimate(policy, DeviceState(), DST_DAY, 7) == DST_DAY + timedelta(2)


def test_a_batch_of_one_pauses_after_every_send():
    policy = PacingPolicy(
        gap_seconds=25, batch_size=1, batch_pause_seconds=60, daily_limit=10, message_2_reserve=0
    )
    times, _ = send_greedily(policy, DeviceState(), DST_DAY, 3)
    assert times == [DST_DAY + timedelta(seconds=60 * n) for n in range(3)]


def test_a_pause_shorter_than_the_gap_never_shortens_the_gap():
    policy = PacingPolicy(
        gap_seconds=25, batch_size=2, batch_pause_seconds=5, daily_limit=10, message_2_reserve=0
    )
    times, _ = send_greedily(policy, DeviceState(), DST_DAY, 3)
    assert times == [DST_DAY + timedelta(seconds=25 * n) for n in range(3)]


def test_a_rate_limit_wait_holds_sends_back_but_never_shortens_a_batch_pause():
    state = pacing_record_wait(state=DeviceState(), until=DST_DAY + timedelta(minutes=1))
    a_minute_later = DST_DAY + timedelta(minutes=1)
    assert decide(DEFAULT, state, DST_DAY) == Decision(Action.BATCH_PAUSE, a_minute_later)
    shorter = pacing_record_wait(state=state, until=DST_DAY + timedelta(seconds=5))
    assert shorter.paused_until == a_minute_later


# --- validation ------------------------------------------------------------------------------


def test_naive_datetimes_are_rejected_everywhere():
    naive = datetime(2026, 3, 29, 12, 0)
    calls = [
        lambda: decide(DEFAULT, DeviceState(), naive),
        lambda: send(DEFAULT, DeviceState(), naive),
        lambda: estimate(DEFAULT, DeviceState(), naive, 1),
        lambda: next_utc_midnight(naive),
        lambda: DeviceState(last_sent_at=naive),
        lambda: DeviceState(paused_until=naive),
        lambda: pacing_record_wait(state=DeviceState(), until=naive),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="timezone-aware"):
            call()


def test_state_datetimes_are_kept_in_utc():
    plus_two = timezone(timedelta(hours=2))
    state = DeviceState(last_sent_at=datetime(2026, 3, 29, 2, 0, tzinfo=plus_two))
    assert state.last_sent_at.tzinfo is UTC
    assert state.last_sent_at == DST_DAY


@pytest.mark.parametrize(
    "figures",
    [
        {"gap_seconds": -1},
        {"gap_seconds": float("nan")},
        {"batch_size": 0},
        {"batch_pause_seconds": float("inf")},
        {"daily_limit": -1},
        {"message_2_reserve": 1001},
        {"message_2_reserve": -1},
    ],
)
def test_an_impossible_policy_is_rejected(figures):
    defaults = {
        "gap_seconds": 25,
        "batch_size": 25,
        "batch_pause_seconds": 300,
        "daily_limit": 1000,
        "message_2_reserve": 0,
    }
    with pytest.raises(ValueError, match="must be"):
        PacingPolicy(**(defaults | figures))


def test_kinds_match_the_stored_message_kinds():
    assert [kind.value for kind in Kind] == ["message_1", "message_2"]
    assert decide(DEFAULT, DeviceState(), DST_DAY, "message_2").action is Action.SEND
