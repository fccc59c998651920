"""Sharing Message 1s between devices (messaging/shares.py), for every pacing and queue."""

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from messaging import pacing
from messaging.shares import Lane, shares_balanced

NOW = datetime(2026, 3, 29, 22, 30, tzinfo=UTC)  # close to midnight: quotas and days both matter


@st.composite
def lanes(draw) -> Lane:
    limit = draw(st.integers(0, 60))
    policy = pacing.PacingPolicy(
        gap_seconds=draw(st.sampled_from([0, 1, 25, 600])),
        batch_size=draw(st.integers(1, 30)),
        batch_pause_seconds=draw(st.sampled_from([0, 300, 3600])),
        daily_limit=limit,
        message_2_reserve=draw(st.integers(0, limit)),
    )
    sent = draw(st.integers(0, limit))
    state = pacing.DeviceState(
        last_sent_at=NOW - timedelta(seconds=draw(st.integers(0, 1000))),
        day=NOW.date(),
        message_1_today=min(sent, policy.allowance(pacing.Kind.MESSAGE_1)),
    )
    return Lane(
        policy, state, message_1_ahead=draw(st.integers(0, 40)), message_2_ahead=draw(st.integers(0, 5))
    )


def latest(all_lanes, shares) -> datetime:
    return max(
        lane.finish(now=NOW, extra=share) for lane, share in zip(all_lanes, shares, strict=True) if share
    )


@hypothesis_settings(max_examples=150, deadline=None)
@given(st.lists(lanes(), min_size=1, max_size=4), st.integers(0, 150))
def test_shares_add_up_go_only_to_devices_that_may_send_and_no_move_finishes_earlier(all_lanes, count):
    shares = shares_balanced(lanes=all_lanes, count=count, now=NOW)
    able = [lane.can_send_message_1 for lane in all_lanes]
    assert sum(shares) == (count if any(able) else 0)
    assert all(share == 0 for share, can in zip(shares, able, strict=True) if not can)
    if not sum(shares):
        return
    # Balanced: taking one message off the device that ends last and giving it to any other
    # device that may send never brings the campaign's end forward.
    end = latest(all_lanes, shares)
    last = max(
        (i for i, s in enumerate(shares) if s), key=lambda i: all_lanes[i].finish(now=NOW, extra=shares[i])
    )
    for other, can in enumerate(able):
        if can and other != last:
            moved = list(shares)
            moved[last], moved[other] = moved[last] - 1, moved[other] + 1
            assert latest(all_lanes, moved) >= end - timedelta(milliseconds=1)


def test_equal_devices_share_alike():
    policy = pacing.PacingPolicy(0, 1000, 0, 1000, 100)
    lane = Lane(policy, pacing.DeviceState())
    assert shares_balanced(lanes=[lane, lane, lane], count=31, now=NOW) == [11, 10, 10]


def test_a_device_with_less_quota_left_today_takes_fewer():
    policy = pacing.PacingPolicy(60, 1000, 0, 1000, 100)
    tired = Lane(policy, pacing.DeviceState(day=NOW.date(), message_1_today=895))  # 5 left before midnight
    fresh = Lane(policy, pacing.DeviceState())
    assert shares_balanced(lanes=[tired, fresh], count=40, now=NOW) == [5, 35]
