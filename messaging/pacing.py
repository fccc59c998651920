"""Pacing for one WhatsApp sending device: may a send happen now, and when will a queue end.

Pure on purpose: no I/O, no Django, no clock of its own. Every function takes `now`, so the
senders, the launch screen and the hypothesis tests drive the very same rules, and a test can
move time by hand. The device's row in the database is the source of truth; callers load it
into a `DeviceState`, ask `pacing_decide`, send, and store what `pacing_record_send` returns.

Datetimes must be timezone-aware. They are converted to UTC on the way in because the daily
quota belongs to the UTC date, and because arithmetic on a zone with daylight saving (a
`ZoneInfo`) is wall-clock arithmetic, which would make a 25 s gap an hour long once a year.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from fractions import Fraction


class Kind(StrEnum):
    """Which message of the campaign is sent (same values as `MessageKind` in the models)."""

    MESSAGE_1 = "message_1"
    MESSAGE_2 = "message_2"


class Action(StrEnum):
    SEND = "send"
    WAIT = "wait"  # the gap since the last send has not elapsed yet
    BATCH_PAUSE = "batch_pause"  # a pause stored in the state: after a batch, or a rate limit
    DAILY_LIMIT = "daily_limit"  # today's quota for this kind is spent


@dataclass(frozen=True)
class PacingPolicy:
    """A device's pacing; every figure comes from the device row (defaults are settings)."""

    gap_seconds: float
    batch_size: int
    batch_pause_seconds: float
    daily_limit: int
    message_2_reserve: int  # sends held back for Message 2 each UTC day

    def __post_init__(self) -> None:
        # A bad figure here would surface later as a sender that never sends or never stops.
        _require(_finite_at_least_zero(self.gap_seconds), "gap_seconds must be finite and >= 0")
        _require(self.batch_size >= 1, "batch_size must be >= 1")
        _require(
            _finite_at_least_zero(self.batch_pause_seconds),
            "batch_pause_seconds must be finite and >= 0",
        )
        _require(self.daily_limit >= 0, "daily_limit must be >= 0")
        _require(
            0 <= self.message_2_reserve <= self.daily_limit,
            "message_2_reserve must be between 0 and daily_limit",
        )

    @property
    def gap(self) -> timedelta:
        return timedelta(seconds=self.gap_seconds)

    @property
    def step_after_batch(self) -> timedelta:
        """From the last send of a full batch to the next send: the pause, never below the gap."""
        return max(self.gap, timedelta(seconds=self.batch_pause_seconds))

    def allowance(self, kind: Kind) -> int:
        """Sends of `kind` a fresh UTC day allows: Message 1 never eats into the reserve."""
        if Kind(kind) is Kind.MESSAGE_2:
            return self.daily_limit
        return self.daily_limit - self.message_2_reserve


@dataclass(frozen=True)
class DeviceState:
    """What pacing needs to know about a device's past sends."""

    last_sent_at: datetime | None = None
    sent_in_batch: int = 0  # sends since the last batch pause ended
    day: date | None = None  # the UTC date the two counters below belong to
    message_1_today: int = 0
    message_2_today: int = 0
    paused_until: datetime | None = None  # batch pause or a rate-limit wait imposed from outside

    def __post_init__(self) -> None:
        for name in ("last_sent_at", "paused_until"):
            if getattr(self, name) is not None:
                # Frozen, yet normalised once here so that no function below can forget it.
                object.__setattr__(self, name, _utc(getattr(self, name), name))
        counters = (self.sent_in_batch, self.message_1_today, self.message_2_today)
        _require(min(counters) >= 0, "DeviceState counters must be >= 0")

    def sent_on(self, day: date) -> tuple[int, int]:
        """(Message 1, Message 2) sent on `day`; another day's counters count as zero."""
        if self.day != day:
            return 0, 0
        return self.message_1_today, self.message_2_today


@dataclass(frozen=True)
class Decision:
    action: Action
    # == now for SEND; otherwise the earliest time a send of this kind may happen.
    not_before: datetime


def reserve_for(daily_limit: int, share: float | Fraction | str) -> int:
    """Sends of `daily_limit` to hold back for Message 2, from a share such as 0.1.

    Rounded up so that a small share still reserves something, and computed on the share as
    written: with binary floats 100 * 0.07 is 7.000000000000001, whose ceiling would be 8.
    """
    exact = Fraction(str(share))
    return min(max(math.ceil(daily_limit * exact), 0), daily_limit)


def next_utc_midnight(now: datetime) -> datetime:
    """The first UTC midnight strictly after `now`: when the next day's quota starts."""
    tomorrow = _utc(now, "now").date() + timedelta(days=1)
    return datetime.combine(tomorrow, time(0), tzinfo=UTC)


def pacing_remaining_today(
    *,
    policy: PacingPolicy,
    state: DeviceState,
    now: datetime,
    kind: Kind,
) -> int:
    """How many more sends of `kind` the quota of now's UTC day allows (pauses aside)."""
    message_1, message_2 = state.sent_on(_utc(now, "now").date())
    return _room(policy, message_1=message_1, message_2=message_2, kind=Kind(kind))


def pacing_decide(
    *,
    policy: PacingPolicy,
    state: DeviceState,
    now: datetime,
    kind: Kind,
) -> Decision:
    """Whether a send of `kind` may happen at `now`, and if not, the earliest time it may."""
    now, kind = _utc(now, "now"), Kind(kind)
    earliest = _earliest_send(policy, state, now)
    if pacing_remaining_today(policy=policy, state=state, now=now, kind=kind) == 0:
        return Decision(Action.DAILY_LIMIT, _first_allowed(policy, state, kind, earliest))
    if earliest > now:
        return Decision(_wait_action(state, earliest), earliest)
    return Decision(Action.SEND, now)


def pacing_record_send(
    *,
    policy: PacingPolicy,
    state: DeviceState,
    now: datetime,
    kind: Kind,
) -> DeviceState:
    """The state after a send of `kind` at `now`; a full batch starts the batch pause.

    It records what happened and does not re-check the policy: the send already took place.
    """
    now, kind = _utc(now, "now"), Kind(kind)
    message_1, message_2 = state.sent_on(now.date())
    batch_full = state.sent_in_batch + 1 >= policy.batch_size
    pause_end = now + timedelta(seconds=policy.batch_pause_seconds)
    return replace(
        state,
        last_sent_at=now,
        sent_in_batch=0 if batch_full else state.sent_in_batch + 1,
        day=now.date(),
        message_1_today=message_1 + (kind is Kind.MESSAGE_1),
        message_2_today=message_2 + (kind is Kind.MESSAGE_2),
        paused_until=_later(state.paused_until, pause_end) if batch_full else state.paused_until,
    )


def pacing_record_wait(*, state: DeviceState, until: datetime) -> DeviceState:
    """The state after being told to wait until `until` (a 429's Retry-After, say).

    Keeps the later of that wait and any pause already running, so a short Retry-After never
    cuts a batch pause short.
    """
    return replace(state, paused_until=_later(state.paused_until, _utc(until, "until")))


def pacing_estimate_finish(
    *,
    policy: PacingPolicy,
    state: DeviceState,
    now: datetime,
    message_1: int,
    message_2: int = 0,
) -> datetime:
    """When the last of the pending messages will have been sent, at the fastest pace allowed.

    Message 2 goes first, as the senders do. Exact for that greedy schedule, and computed a
    UTC day at a time (a closed form plus a binary search per day), because launch asks it
    for 100,000 messages while the operator waits. `now` itself when nothing is pending.
    """
    now = _utc(now, "now")
    _check_estimable(policy, message_1=message_1, message_2=message_2)
    run = _first_run(policy, state, now, message_1=message_1, message_2=message_2)
    last = now
    while run.message_1 + run.message_2 > 0:
        run, last = _send_one_day(policy, run, last)
    return last


# --- helpers ---------------------------------------------------------------------------------


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _finite_at_least_zero(seconds: float) -> bool:
    return math.isfinite(seconds) and seconds >= 0


def _utc(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime (UTC), got naive {moment!r}")
    return moment.astimezone(UTC)


def _later(first: datetime | None, second: datetime) -> datetime:
    return second if first is None else max(first, second)


def _room(policy: PacingPolicy, *, message_1: int, message_2: int, kind: Kind) -> int:
    """Sends of `kind` still allowed on a day that has seen these sends."""
    total_left = policy.daily_limit - message_1 - message_2
    if kind is Kind.MESSAGE_1:
        total_left = min(total_left, policy.allowance(Kind.MESSAGE_1) - message_1)
    return max(total_left, 0)


def _earliest_send(policy: PacingPolicy, state: DeviceState, now: datetime) -> datetime:
    """The earliest time the gap and any pause allow, quotas aside."""
    earliest = now
    if state.last_sent_at is not None:
        earliest = max(earliest, state.last_sent_at + policy.gap)
    if state.paused_until is not None:
        earliest = max(earliest, state.paused_until)
    return earliest


def _first_allowed(policy: PacingPolicy, state: DeviceState, kind: Kind, at: datetime) -> datetime:
    """`at`, or the next UTC midnight if the quota of at's day for `kind` is spent.

    One midnight is enough: a new day's counters start at zero. Only an allowance of zero
    refuses again then, and no later time would do better.
    """
    if pacing_remaining_today(policy=policy, state=state, now=at, kind=kind) > 0:
        return at
    return next_utc_midnight(at)


def _wait_action(state: DeviceState, earliest: datetime) -> Action:
    """Name what holds the send back: a stored pause, or just the gap."""
    if state.paused_until is not None and state.paused_until >= earliest:
        return Action.BATCH_PAUSE
    return Action.WAIT


def _check_estimable(policy: PacingPolicy, *, message_1: int, message_2: int) -> None:
    # Without this an estimate with an allowance of zero would wait for a midnight forever.
    _require(message_1 >= 0 and message_2 >= 0, "pending message counts must be >= 0")
    for kind, pending in ((Kind.MESSAGE_1, message_1), (Kind.MESSAGE_2, message_2)):
        if pending and policy.allowance(kind) == 0:
            raise ValueError(
                f"{pending} {kind} can never be sent: the device allows 0 {kind} a day "
                f"(daily_limit {policy.daily_limit}, reserve {policy.message_2_reserve})"
            )


@dataclass(frozen=True)
class _Run:
    """Sends that may follow each other without a quota wait, from `start` on."""

    start: datetime  # the time of the next send, if its UTC day's quota allows it
    position: int  # sends already in the current batch
    message_1_today: int  # sends already on start's UTC day
    message_2_today: int
    message_1: int  # still pending
    message_2: int


def _first_run(
    policy: PacingPolicy, state: DeviceState, now: datetime, *, message_1: int, message_2: int
) -> _Run:
    start = _earliest_send(policy, state, now)
    sent_1, sent_2 = state.sent_on(start.date())
    # A batch size lowered below the state's count pauses after the very next send.
    position = min(state.sent_in_batch, policy.batch_size - 1)
    return _Run(start, position, sent_1, sent_2, message_1, message_2)


def _send_one_day(policy: PacingPolicy, run: _Run, last: datetime) -> tuple[_Run, datetime]:
    """Send what run.start's UTC day allows; return the next day's run and the last send."""
    midnight = next_utc_midnight(run.start)
    sendable = range(_sendable_today(policy, run))
    sent = bisect_left(sendable, midnight, key=lambda index: _send_time(policy, run, index))
    if sent == 0:  # the day's quota was spent before the run began
        return replace(run, start=midnight, message_1_today=0, message_2_today=0), last
    last = _send_time(policy, run, sent - 1)
    position = (run.position + sent) % policy.batch_size
    after = last + (policy.step_after_batch if position == 0 else policy.gap)
    sent_2 = min(sent, run.message_2)
    # Stopped by the quota or by midnight: either way the next send is on a later, fresh day.
    pending_1, pending_2 = run.message_1 - (sent - sent_2), run.message_2 - sent_2
    return _Run(max(after, midnight), position, 0, 0, pending_1, pending_2), last


def _sendable_today(policy: PacingPolicy, run: _Run) -> int:
    """How many of the pending sends (Message 2 first) the quota of run.start's day allows."""
    sent_1, sent_2 = run.message_1_today, run.message_2_today
    room_2 = _room(policy, message_1=sent_1, message_2=sent_2, kind=Kind.MESSAGE_2)
    message_2 = min(run.message_2, room_2)
    # Message 2s that do not fit use up the whole day, which leaves room_1 at zero.
    room_1 = _room(policy, message_1=sent_1, message_2=sent_2 + message_2, kind=Kind.MESSAGE_1)
    return message_2 + min(run.message_1, room_1)


def _send_time(policy: PacingPolicy, run: _Run, index: int) -> datetime:
    """Time of the run's `index`-th send (from 0) if nothing stops it: the gap between sends,
    the longer step after each full batch. Whole timedeltas, so it matches send-by-send sums."""
    pauses = (run.position + index) // policy.batch_size
    return run.start + index * policy.gap + pauses * (policy.step_after_batch - policy.gap)
