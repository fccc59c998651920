"""Send windows, jitter and warm-up of the pacing module (issue 21), pure: no database."""

import random
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from messaging.pacing import (
    ALWAYS_OPEN,
    Action,
    DeviceState,
    Kind,
    PacingPolicy,
    pacing_decide,
    pacing_estimate_finish,
    pacing_plan_days,
    pacing_record_send,
    parse_warmup,
    parse_window,
    window_closes_at,
    window_is_open,
    window_opens_at,
)

PARIS = ZoneInfo("Europe/Paris")
DAYTIME = parse_window("mon-sun 09:00-20:00")
LEGACY = dict(gap_seconds=25, batch_size=25, batch_pause_seconds=300, daily_limit=1000, message_2_reserve=100)


def paris(*args) -> datetime:
    return datetime(*args, tzinfo=PARIS)


def policy(**changes) -> PacingPolicy:
    return PacingPolicy(**{**LEGACY, "window": DAYTIME, "zone": PARIS, **changes})


# --- the window's text -------------------------------------------------------------------------


def test_always_and_empty_mean_always_open():
    assert parse_window("always") == parse_window("") == parse_window(" ALWAYS ") == ALWAYS_OPEN


def test_a_window_reads_day_ranges_several_rules_and_several_times_a_day():
    window = parse_window("mon-fri 09:00-12:00 14:00-19:00; sat 10:00-13:00")
    assert window.days[0] == ((540, 720), (840, 1140))
    assert window.days[4] == window.days[0]
    assert window.days[5] == ((600, 780),)
    assert window.days[6] == ()


def test_a_day_range_may_wrap_over_the_week_end():
    window = parse_window("fri-mon 10:00-11:00")
    assert [bool(day) for day in window.days] == [True, False, False, False, True, True, True]


@pytest.mark.parametrize(
    "text",
    [
        "mon 20:00-09:00",
        "mon 9-20",
        "funday 09:00-10:00",
        "mon 09:00-25:00",
        "mon 09:60-10:00",
        "09:00-20:00",
    ],
)
def test_an_unreadable_window_is_refused_in_words(text):
    with pytest.raises(ValueError, match=r"\w+"):
        parse_window(text)


def test_a_range_may_end_at_midnight():
    assert parse_window("sun 20:00-24:00").days[6] == ((1200, 1440),)


# --- where the window is open ------------------------------------------------------------------


def test_the_window_is_wall_time_in_the_device_zone():
    assert window_is_open(DAYTIME, PARIS, paris(2026, 1, 5, 9, 0))
    assert not window_is_open(DAYTIME, PARIS, paris(2026, 1, 5, 8, 59, 59))
    assert not window_is_open(DAYTIME, PARIS, paris(2026, 1, 5, 20, 0))
    # 09:00 in Paris is 08:00 UTC in winter and 07:00 UTC in summer.
    assert window_opens_at(DAYTIME, PARIS, datetime(2026, 1, 5, 2, tzinfo=UTC)) == datetime(
        2026, 1, 5, 8, tzinfo=UTC
    )
    assert window_opens_at(DAYTIME, PARIS, datetime(2026, 7, 5, 2, tzinfo=UTC)) == datetime(
        2026, 7, 5, 7, tzinfo=UTC
    )


def test_the_window_opens_at_nine_on_the_day_the_clocks_go_forward_and_back():
    # 29 March 2026 (an hour skipped) and 25 October 2026 (an hour repeated) in Paris.
    assert window_opens_at(DAYTIME, PARIS, paris(2026, 3, 29, 1)) == paris(2026, 3, 29, 9)
    assert window_opens_at(DAYTIME, PARIS, paris(2026, 10, 25, 1)) == paris(2026, 10, 25, 9)
    assert window_closes_at(DAYTIME, PARIS, paris(2026, 10, 25, 12)) == paris(2026, 10, 25, 20)


def test_an_edge_in_the_skipped_hour_opens_late_and_closes_early_never_the_reverse():
    night = parse_window("sun 02:30-03:30")
    opens = window_opens_at(night, PARIS, paris(2026, 3, 29, 0))
    closes = window_closes_at(night, PARIS, opens)
    # 02:30 does not exist that night: sending starts no earlier than 03:00 local (here not
    # at all that night, as 03:30 comes first), always at a wall time inside the window.
    assert opens >= datetime(2026, 3, 29, 1, tzinfo=UTC)
    assert "02:30" <= f"{opens.astimezone(PARIS):%H:%M}" < f"{closes.astimezone(PARIS):%H:%M}" <= "03:30"


def test_ranges_that_touch_close_as_one():
    window = parse_window("sun 20:00-24:00; mon 00:00-09:00")
    assert window_closes_at(window, PARIS, paris(2026, 1, 4, 21)) == paris(2026, 1, 5, 9)


def test_a_closed_day_is_skipped_to_the_next_open_one():
    weekdays = parse_window("mon-fri 09:00-20:00")
    friday_night = paris(2026, 1, 9, 21)
    assert window_opens_at(weekdays, PARIS, friday_night) == paris(2026, 1, 12, 9)


# --- Message 1 and Message 2 against the window ------------------------------------------------


def test_message_1_outside_the_window_waits_for_its_opening():
    decision = pacing_decide(
        policy=policy(), state=DeviceState(), now=paris(2026, 1, 5, 22), kind=Kind.MESSAGE_1
    )
    assert decision.action is Action.WINDOW_CLOSED
    assert decision.not_before == paris(2026, 1, 6, 9)


def test_the_gap_still_holds_at_the_opening():
    state = DeviceState(last_sent_at=paris(2026, 1, 6, 8, 59, 50))  # say, a Message 2 just before
    decision = pacing_decide(policy=policy(), state=state, now=paris(2026, 1, 6, 9), kind=Kind.MESSAGE_1)
    assert (decision.action, decision.not_before) == (Action.WAIT, paris(2026, 1, 6, 9, 0, 15))


def test_message_2_may_answer_a_reply_outside_the_window_for_an_hour():
    reply = paris(2026, 1, 5, 22)
    for minutes, action in ((0, Action.SEND), (60, Action.SEND), (61, Action.WINDOW_CLOSED)):
        now = reply + timedelta(minutes=minutes)
        decision = pacing_decide(
            policy=policy(), state=DeviceState(), now=now, kind=Kind.MESSAGE_2, replied_at=reply
        )
        assert decision.action is action, minutes
    assert decision.not_before == paris(2026, 1, 6, 9)


def test_message_2_without_a_reply_time_keeps_to_the_window():
    decision = pacing_decide(
        policy=policy(), state=DeviceState(), now=paris(2026, 1, 5, 22), kind=Kind.MESSAGE_2
    )
    assert decision.action is Action.WINDOW_CLOSED


def test_a_spent_quota_waits_for_midnight_and_then_for_the_window():
    state = DeviceState(day=date(2026, 1, 5), message_1_today=900)
    decision = pacing_decide(policy=policy(), state=state, now=paris(2026, 1, 5, 15), kind=Kind.MESSAGE_1)
    assert (decision.action, decision.not_before) == (Action.DAILY_LIMIT, paris(2026, 1, 6, 9))


def test_the_estimate_sends_only_in_the_window():
    # 450 Message 1 take about 4 h 45; from 18:00 only two hours are left the first evening.
    start = paris(2026, 1, 5, 18)
    finish = pacing_estimate_finish(policy=policy(), state=DeviceState(), now=start, message_1=450)
    assert paris(2026, 1, 6, 9) < finish < paris(2026, 1, 6, 13)
    days = pacing_plan_days(policy=policy(), state=DeviceState(), now=start, message_1=450).days
    assert [d.day for d in days] == [date(2026, 1, 5), date(2026, 1, 6)]
    assert sum(d.sends for d in days) == 450


# --- jitter ------------------------------------------------------------------------------------


def test_jittered_gaps_and_batches_stay_within_their_bounds_and_are_kept_in_the_state():
    jittered = policy(window=ALWAYS_OPEN, daily_limit=5000, gap_jitter=0.4, batch_jitter=0.2)
    rng, state, now = random.Random(7), DeviceState(), paris(2026, 1, 5, 10)
    gaps, batches, in_batch = [], [], 0
    while len(gaps) < 2000:
        decision = pacing_decide(policy=jittered, state=state, now=now, kind=Kind.MESSAGE_1)
        if decision.action is not Action.SEND:
            now = decision.not_before
            continue
        if state.last_sent_at is not None and state.sent_in_batch:  # within a batch: a gap
            gaps.append((now - state.last_sent_at).total_seconds())
        state = pacing_record_send(policy=jittered, state=state, now=now, kind=Kind.MESSAGE_1, rng=rng)
        in_batch += 1
        if state.sent_in_batch == 0:
            batches.append(in_batch)
            in_batch = 0
    assert 25 <= min(gaps) and max(gaps) <= 35
    assert len({round(g) for g in gaps}) == 11  # every second from 25 to 35: no machine rhythm
    assert {*batches} <= set(range(20, 26)) and len(set(batches)) == 6


def test_without_a_random_source_the_rhythm_is_the_legacy_one():
    jittered = policy(window=ALWAYS_OPEN, gap_jitter=0.4, batch_jitter=0.2)
    state = pacing_record_send(
        policy=jittered, state=DeviceState(), now=paris(2026, 1, 5, 10), kind=Kind.MESSAGE_1
    )
    assert state.next_gap_seconds is None and state.batch_target is None


def test_a_stored_draw_outside_todays_bounds_is_brought_back_within_them():
    # The operator raised the gap to 60 s after a 30 s draw was stored: 60 s it is.
    state = DeviceState(last_sent_at=paris(2026, 1, 5, 10), next_gap_seconds=30)
    decision = pacing_decide(
        policy=policy(window=ALWAYS_OPEN, gap_seconds=60, gap_jitter=0.4),
        state=state,
        now=paris(2026, 1, 5, 10, 0, 40),
        kind=Kind.MESSAGE_1,
    )
    assert decision.not_before == paris(2026, 1, 5, 10, 1)


def test_the_estimate_uses_jitters_mean_and_is_never_earlier_than_without_it():
    start = paris(2026, 1, 5, 10)
    plain = pacing_estimate_finish(
        policy=policy(window=ALWAYS_OPEN), state=DeviceState(), now=start, message_1=200
    )
    jittered = pacing_estimate_finish(
        policy=policy(window=ALWAYS_OPEN, gap_jitter=0.4, batch_jitter=0.2),
        state=DeviceState(),
        now=start,
        message_1=200,
    )
    assert jittered > plain
    # 200 sends: 199 gaps of 30 s on average and 9 pauses (batches of 22).
    assert abs((jittered - start).total_seconds() - (199 * 30 + 9 * 270)) < 1


# --- warm-up -----------------------------------------------------------------------------------

WARMUP = parse_warmup("0-3:50,4-7:100,8-14:250,15-29:500")


def test_the_warm_up_table_reads_its_steps():
    assert WARMUP == ((0, 3, 50), (4, 7, 100), (8, 14, 250), (15, 29, 500))
    assert parse_warmup("") == ()
    with pytest.raises(ValueError):
        parse_warmup("3-0:50")


@pytest.mark.parametrize(("age", "limit"), [(0, 50), (3, 50), (4, 100), (14, 250), (29, 500), (30, 1000)])
def test_a_young_number_has_the_limit_of_its_age(age, limit):
    young = policy(warmup=WARMUP, number_since=date(2026, 1, 1))
    assert young.limit_on(date(2026, 1, 1) + timedelta(days=age)) == limit
    assert young.warming_up(date(2026, 1, 1) + timedelta(days=age)) is (limit < 1000)


def test_warm_up_never_raises_a_device_limit_set_lower():
    assert (
        policy(daily_limit=80, message_2_reserve=8, warmup=WARMUP, number_since=date(2026, 1, 1)).limit_on(
            date(2026, 1, 6)
        )
        == 80
    )


def test_a_new_number_sends_45_message_1_on_its_first_day_keeping_5_for_message_2():
    young = policy(window=ALWAYS_OPEN, warmup=WARMUP, number_since=date(2026, 1, 5))
    state, now, sent = DeviceState(), paris(2026, 1, 5, 10), 0
    while True:
        decision = pacing_decide(policy=young, state=state, now=now, kind=Kind.MESSAGE_1)
        if decision.action is Action.DAILY_LIMIT:
            break
        if decision.action is Action.SEND:
            state, sent = (
                pacing_record_send(policy=young, state=state, now=now, kind=Kind.MESSAGE_1),
                sent + 1,
            )
        else:
            now = decision.not_before
    assert sent == 45
    message_2 = pacing_decide(policy=young, state=state, now=now, kind=Kind.MESSAGE_2)
    assert message_2.action is Action.WAIT  # just the gap: the reserve is Message 2's


def test_the_plan_of_a_new_number_ramps_up_day_by_day():
    young = policy(warmup=WARMUP, number_since=date(2026, 1, 5))
    plan = pacing_plan_days(policy=young, state=DeviceState(), now=paris(2026, 1, 5, 9), message_1=400)
    assert [(d.sends, d.warming_up) for d in plan.days] == [(45, True)] * 4 + [(90, True)] * 2 + [(40, True)]
