"""The pacing rules of issue 21 hold for every policy and every sequence of events.

Hypothesis draws a policy (window, zone, jitter, warm-up, batch, gap, limit, reserve), a start
near a daylight-saving change, and a sequence of send attempts of either kind (a Message 2
with its reply some minutes back), clock moves and jumps to the moment pacing names. The
sends that happen are then checked against the rules, each computed here on its own terms:
the window by the send's wall time in the zone, the limits from the warm-up table.
"""

import math
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from messaging.pacing import (
    Action,
    DeviceState,
    Kind,
    PacingPolicy,
    pacing_decide,
    pacing_estimate_finish,
    pacing_record_send,
    parse_warmup,
    parse_window,
)

ZONES = ["Europe/Paris", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", "Pacific/Chatham", "UTC"]
WINDOWS = [
    "always",
    "mon-sun 09:00-20:00",
    "mon-fri 08:30-12:00 13:30-18:00; sat 10:00-12:00",
    "sun 01:30-03:30; mon-sat 00:00-24:00",  # edges inside the hours DST skips or repeats
    "fri-mon 22:00-24:00; tue-thu 00:00-02:15",
]
# Nights the clocks change somewhere among the zones (Europe, the US, Lord Howe, Chatham).
DST_NIGHTS = [
    datetime(2026, 3, 29, tzinfo=UTC),
    datetime(2026, 10, 25, tzinfo=UTC),
    datetime(2026, 3, 8, tzinfo=UTC),
    datetime(2026, 11, 1, tzinfo=UTC),
    datetime(2026, 4, 5, tzinfo=UTC),
    datetime(2026, 9, 27, tzinfo=UTC),
]
HYPOTHESIS = settings(max_examples=150, deadline=None)


@st.composite
def policies(draw) -> PacingPolicy:
    daily_limit = draw(st.integers(2, 60))
    share = draw(st.sampled_from([Fraction(0), Fraction(1, 10), Fraction(1, 4), Fraction(1, 2)]))
    warmup = draw(st.sampled_from(["", "0-1:2,2-3:5", "0-0:3,1-2:10,3-9:30"]))
    return PacingPolicy(
        gap_seconds=draw(st.sampled_from([0, 5, 25, 600])),
        batch_size=draw(st.integers(1, 8)),
        batch_pause_seconds=draw(st.sampled_from([0, 60, 300, 3600])),
        daily_limit=daily_limit,
        message_2_reserve=math.ceil(daily_limit * share),
        window=parse_window(draw(st.sampled_from(WINDOWS))),
        zone=ZoneInfo(draw(st.sampled_from(ZONES))),
        message_2_after_hours_seconds=draw(st.sampled_from([0, 1800, 3600])),
        gap_jitter=draw(st.sampled_from([0, 0.4, 1.0])),
        batch_jitter=draw(st.sampled_from([0, 0.2, 0.5])),
        warmup=parse_warmup(warmup),
        number_since=draw(st.sampled_from(DST_NIGHTS)).date() - timedelta(days=draw(st.integers(0, 3))),
    )


# An event: try a send of a kind (a Message 2's reply written some minutes ago), after moving
# the clock some seconds, or after jumping to the moment the last refusal named.
events = st.lists(
    st.tuples(
        st.sampled_from([Kind.MESSAGE_1, Kind.MESSAGE_2]),
        st.integers(0, 240),  # minutes since the reply (Message 2)
        st.one_of(st.just(None), st.integers(0, 7200)),  # None: jump to not_before
    ),
    min_size=1,
    max_size=120,
)


def drive(policy, start, steps, seed):
    """Run the events; the sends that happened: (time, kind, reply time, state before)."""
    rng, state, now, sends, refused = random.Random(seed), DeviceState(), start, [], None
    for kind, reply_minutes, move in steps:
        now = refused if move is None and refused is not None else now + timedelta(seconds=move or 0)
        replied = now - timedelta(minutes=reply_minutes) if kind is Kind.MESSAGE_2 else None
        decision = pacing_decide(policy=policy, state=state, now=now, kind=kind, replied_at=replied)
        if decision.action is Action.SEND:
            sends.append((now, kind, replied, state))
            state = pacing_record_send(policy=policy, state=state, now=now, kind=kind, rng=rng)
            refused = None
        else:
            assert decision.not_before > now
            refused = decision.not_before
    return sends, state


def in_window(window, zone, moment) -> bool:
    """The rule itself: the send's wall time in the zone falls in a range of its weekday."""
    if window.always:
        return True
    local = moment.astimezone(zone)
    minute = local.hour * 60 + local.minute + (local.second + local.microsecond / 1e6) / 60
    return any(start <= minute < end for start, end in window.days[local.weekday()])


def limit_of(policy, day) -> int:
    age = max((day - policy.number_since).days, 0)
    steps = [limit for first, last, limit in policy.warmup if first <= age <= last]
    return min(steps[0], policy.daily_limit) if steps else policy.daily_limit


def reserve_of(policy, day) -> int:
    limit = limit_of(policy, day)
    if limit == policy.daily_limit:
        return policy.message_2_reserve
    return min(math.ceil(limit * Fraction(policy.message_2_reserve, policy.daily_limit)), limit)


start_times = st.builds(
    lambda night, hours: night + timedelta(hours=hours), st.sampled_from(DST_NIGHTS), st.integers(-30, 30)
)


@HYPOTHESIS
@given(policy=policies(), start=start_times, steps=events, seed=st.integers(0, 2**32))
def test_no_message_1_outside_the_window_and_message_2_only_within_its_allowance(policy, start, steps, seed):
    sends, _ = drive(policy, start, steps, seed)
    allowance = timedelta(seconds=policy.message_2_after_hours_seconds)
    for moment, kind, replied, _ in sends:
        if kind is Kind.MESSAGE_1:
            assert in_window(policy.window, policy.zone, moment), moment.astimezone(policy.zone)
        else:
            assert in_window(policy.window, policy.zone, moment) or moment <= replied + allowance


@HYPOTHESIS
@given(policy=policies(), start=start_times, steps=events, seed=st.integers(0, 2**32))
def test_no_gap_under_the_floor_no_batch_over_its_size_and_the_pause_after_each(policy, start, steps, seed):
    sends, _ = drive(policy, start, steps, seed)
    in_batch = 0
    for (before, _, _, _), (after, _, _, state) in zip(sends, sends[1:], strict=False):
        assert after - before >= timedelta(seconds=policy.gap_seconds)
        in_batch += 1
        assert in_batch <= policy.batch_size
        if state.sent_in_batch == 0:  # `before` closed a batch
            assert after - before >= timedelta(seconds=policy.batch_pause_seconds)
            in_batch = 0


@HYPOTHESIS
@given(policy=policies(), start=start_times, steps=events, seed=st.integers(0, 2**32))
def test_never_over_the_effective_daily_limit_nor_into_the_message_2_reserve(policy, start, steps, seed):
    sends, _ = drive(policy, start, steps, seed)
    per_day: dict = {}
    for moment, kind, _, _ in sends:
        day = per_day.setdefault(moment.date(), {Kind.MESSAGE_1: 0, Kind.MESSAGE_2: 0})
        day[kind] += 1
    for day, counts in per_day.items():
        assert counts[Kind.MESSAGE_1] + counts[Kind.MESSAGE_2] <= limit_of(policy, day)
        assert counts[Kind.MESSAGE_1] <= limit_of(policy, day) - reserve_of(policy, day)


@HYPOTHESIS
@given(policy=policies(), start=start_times, steps=events, seed=st.integers(0, 2**32))
def test_a_refusal_names_a_moment_when_the_send_is_allowed(policy, start, steps, seed):
    """A refusal is never a dead end: at its not_before, with nothing sent meanwhile, it sends."""
    _, state = drive(policy, start, steps, seed)
    now = start + timedelta(days=2)
    for kind in Kind:
        replied = now - timedelta(days=1) if kind is Kind.MESSAGE_2 else None
        decision = pacing_decide(policy=policy, state=state, now=now, kind=kind, replied_at=replied)
        if decision.action is not Action.SEND:
            again = pacing_decide(
                policy=policy, state=state, now=decision.not_before, kind=kind, replied_at=replied
            )
            assert again.action is Action.SEND, (decision, again)


def simulate_finish(policy, start, message_1, message_2):
    """The estimate's reference: one decision at a time, Message 2 first (kept to the window)."""
    state, now, last = DeviceState(), start, start
    pending = {Kind.MESSAGE_1: message_1, Kind.MESSAGE_2: message_2}
    while pending[Kind.MESSAGE_1] + pending[Kind.MESSAGE_2]:
        kind = Kind.MESSAGE_2 if pending[Kind.MESSAGE_2] else Kind.MESSAGE_1
        decision = pacing_decide(policy=policy, state=state, now=now, kind=kind)
        if decision.action is Action.SEND:
            state = pacing_record_send(policy=policy, state=state, now=now, kind=kind)
            last, pending[kind] = now, pending[kind] - 1
        else:
            now = decision.not_before
    return last


@HYPOTHESIS
@given(policy=policies(), start=start_times, message_1=st.integers(0, 150), message_2=st.integers(0, 20))
def test_the_estimate_with_windows_and_warm_up_is_the_step_by_step_schedule(
    policy, start, message_1, message_2
):
    exact = replace(policy, gap_jitter=0.0, batch_jitter=0.0)
    if policy.allowance(Kind.MESSAGE_1) == 0 and message_1:
        return
    estimate = pacing_estimate_finish(
        policy=exact, state=DeviceState(), now=start, message_1=message_1, message_2=message_2
    )
    assert estimate == simulate_finish(exact, start, message_1, message_2)
    # With jitter the estimate is the schedule at jitter's mean (gap × (1 + jitter / 2), the
    # middle batch size rounded down), every rule else the same.
    jittered = pacing_estimate_finish(
        policy=policy, state=DeviceState(), now=start, message_1=message_1, message_2=message_2
    )
    assert jittered == simulate_finish(policy.mean(), start, message_1, message_2)
