"""Pacing for one WhatsApp sending device: may a send happen now, and when will a queue end.

Pure on purpose: no I/O, no Django, no clock of its own. Every function takes `now`, so the
senders, the launch screen and the hypothesis tests drive the very same rules, and a test can
move time by hand. The device's row in the database is the source of truth; callers load it
into a `DeviceState`, ask `pacing_decide`, send, and store what `pacing_record_send` returns.

Datetimes must be timezone-aware. They are converted to UTC on the way in because the daily
quota belongs to the UTC date, and because arithmetic on a zone with daylight saving (a
`ZoneInfo`) is wall-clock arithmetic, which would make a 25 s gap an hour long once a year.

On top of the legacy rules, which stay floors (issue 21):
- a weekly send window, wall time in the device's zone: no Message 1 outside it; a Message 2
  may go out up to `message_2_after_hours_seconds` after its contact's reply;
- jitter: each gap drawn in [gap, gap × (1 + gap_jitter)], each batch size in
  [batch × (1 − batch_jitter), batch], from a random source the caller passes (seeded in
  tests), and kept in the state so that a restart keeps the draw;
- warm-up: the daily limit of a young number (days since `number_since`) comes from a table.
"""

from __future__ import annotations

import math
import random
import re
from bisect import bisect_left
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from enum import StrEnum
from fractions import Fraction
from functools import lru_cache


class Kind(StrEnum):
    """Which message of the campaign is sent (same values as `MessageKind` in the models)."""

    MESSAGE_1 = "message_1"
    MESSAGE_2 = "message_2"


class Action(StrEnum):
    SEND = "send"
    WAIT = "wait"  # the gap since the last send has not elapsed yet
    BATCH_PAUSE = "batch_pause"  # a pause stored in the state: after a batch, or a rate limit
    DAILY_LIMIT = "daily_limit"  # today's quota for this kind is spent
    WINDOW_CLOSED = "window_closed"  # outside the device's send window (and any Message 2 allowance)


# --- Send windows ----------------------------------------------------------------------------

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ALWAYS = "always"
_MINUTES_A_DAY = 24 * 60
_RULE = re.compile(r"^(?P<days>[a-z]{3}(?:-[a-z]{3})?)\s+(?P<ranges>.+)$")
_RANGE = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")


def gettext_noop(message: str) -> str:
    """Marks a message for translation (makemessages finds it) without Django: the caller
    that shows it translates it (messaging/models.py)."""
    return message


class WindowTextError(ValueError):
    """A send window's text that cannot be read: `template % params`, in words."""

    def __init__(self, template: str, **params: str):
        self.template, self.params = template, params
        super().__init__(template % params)


@dataclass(frozen=True)
class SendWindow:
    """A weekly window: for each weekday (0 = Monday) its open ranges in wall-clock minutes
    [start, end), end at most 24:00. `days` None: always open."""

    days: tuple[tuple[tuple[int, int], ...], ...] | None = None

    @property
    def always(self) -> bool:
        return self.days is None


ALWAYS_OPEN = SendWindow()


def parse_window(text: str) -> SendWindow:
    """A window from its text: "always", or rules separated by ";" or ",", each a day or a
    range of days and one or more time ranges: "mon-fri 09:00-20:00; sat 10:00-12:30 14:00-18:00".

    Days not named are closed. A range ends at most at 24:00 and never crosses midnight
    (write "fri 20:00-24:00; sat 00:00-02:00" for that). Raises WindowTextError, in words.
    """
    text = (text or "").strip().lower()
    if text in ("", ALWAYS):
        return ALWAYS_OPEN
    days: list[list[tuple[int, int]]] = [[] for _ in WEEKDAYS]
    for rule in filter(None, (part.strip() for part in re.split(r"[;,]", text))):
        match = _RULE.match(rule)
        if match is None:
            raise WindowTextError(
                gettext_noop(
                    "cannot read “%(rule)s”: write a day or days then times, e.g. mon-fri 09:00-20:00"
                ),
                rule=rule,
            )
        ranges = [_parse_range(word) for word in match["ranges"].split()]
        for weekday in _parse_days(match["days"]):
            days[weekday].extend(ranges)
    if not any(days):
        raise WindowTextError(gettext_noop("the window is never open"))
    return SendWindow(tuple(tuple(sorted(ranges)) for ranges in days))


def _parse_days(words: str) -> list[int]:
    first, _, last = words.partition("-")
    for word in (first, last or first):
        if word not in WEEKDAYS:
            raise WindowTextError(
                gettext_noop("unknown day “%(day)s”: use %(days)s"), day=word, days=", ".join(WEEKDAYS)
            )
    start, end = WEEKDAYS.index(first), WEEKDAYS.index(last or first)
    return [(start + offset) % 7 for offset in range((end - start) % 7 + 1)]


def _parse_range(word: str) -> tuple[int, int]:
    match = _RANGE.match(word)
    if match is None:
        raise WindowTextError(
            gettext_noop("cannot read the times “%(times)s”: write HH:MM-HH:MM, e.g. 09:00-20:00"), times=word
        )
    start_hour, start_minute, end_hour, end_minute = map(int, match.groups())
    start, end = start_hour * 60 + start_minute, end_hour * 60 + end_minute
    if start_minute > 59 or end_minute > 59 or start >= _MINUTES_A_DAY or end > _MINUTES_A_DAY:
        raise WindowTextError(gettext_noop("“%(times)s” is not a time of day (00:00 to 24:00)"), times=word)
    if start >= end:
        raise WindowTextError(
            gettext_noop("“%(times)s” ends before it starts (a range never crosses midnight)"), times=word
        )
    return start, end


def window_opens_at(window: SendWindow, zone: tzinfo, now: datetime) -> datetime:
    """`now` if the window is open then, else the next time it opens (UTC)."""
    now = _utc(now, "now")
    if window.always:
        return now
    for opens, closes in _openings(window, zone, now):
        if closes > now:
            return max(opens, now)
    raise AssertionError("a window open some day of the week opens within eight days")


def window_is_open(window: SendWindow, zone: tzinfo, now: datetime) -> bool:
    return window_opens_at(window, zone, now) == _utc(now, "now")


def window_closes_at(window: SendWindow, zone: tzinfo, now: datetime) -> datetime | None:
    """When the window open at `now` closes (ranges that touch count as one); None: never
    (always open). `now` itself when the window is closed at `now`."""
    now = _utc(now, "now")
    if window.always:
        return None
    closing = now
    for opens, closes in _openings(window, zone, now):
        if opens > closing:
            break
        closing = max(closing, closes)
    return closing


def _openings(window: SendWindow, zone: tzinfo, now: datetime):
    """The window's open ranges in UTC, in order, from now's local day on, over eight days
    (a range never crosses midnight, so none of an earlier day is still open)."""
    first_day = now.astimezone(zone).date()
    for offset in range(8):
        day = first_day + timedelta(days=offset)
        for start, end in window.days[day.weekday()]:
            opens, closes = _instant(day, start, zone, latest=True), _instant(day, end, zone, latest=False)
            if opens < closes:
                yield opens, closes


def _instant(day: date, minute: int, zone: tzinfo, *, latest: bool) -> datetime:
    """The UTC instant of a wall time. A wall time a DST change skips or repeats has two
    readings: a window opens at the later and closes at the earlier, so never early, never late."""
    wall = datetime.combine(day + timedelta(days=minute // _MINUTES_A_DAY), time()) + timedelta(
        minutes=minute % _MINUTES_A_DAY
    )
    readings = [wall.replace(tzinfo=zone, fold=fold).astimezone(UTC) for fold in (0, 1)]
    return max(readings) if latest else min(readings)


# --- Warm-up ---------------------------------------------------------------------------------


def parse_warmup(text: str) -> tuple[tuple[int, int, int], ...]:
    """The warm-up table from "0-3:50,4-7:100,…": (first day, last day, daily limit) steps,
    days counted from the number's first day (0). Empty: no warm-up. Raises ValueError."""
    steps = []
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        match = re.match(r"^(\d+)(?:-(\d+))?:(\d+)$", part)
        if match is None:
            raise ValueError(f"cannot read the warm-up step {part!r}: write FIRST-LAST:LIMIT, e.g. 0-3:50")
        first, last = int(match[1]), int(match[2] or match[1])
        if last < first:
            raise ValueError(f"the warm-up step {part!r} ends before it starts")
        steps.append((first, last, int(match[3])))
    return tuple(sorted(steps))


@dataclass(frozen=True)
class PacingPolicy:
    """A device's pacing; every figure comes from the device row (defaults are settings)."""

    gap_seconds: float
    batch_size: int
    batch_pause_seconds: float
    daily_limit: int  # the device's own; a young number's is lower (warm-up, `limit_on`)
    message_2_reserve: int  # sends held back for Message 2 each UTC day (of the device's limit)
    window: SendWindow = ALWAYS_OPEN
    zone: tzinfo = UTC  # the window's wall clock
    message_2_after_hours_seconds: float = 3600.0  # a Message 2 may go out this long after the reply
    gap_jitter: float = 0.0
    batch_jitter: float = 0.0
    warmup: tuple[tuple[int, int, int], ...] = ()
    number_since: date | None = None  # the number's first day, for the warm-up

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
        for name in ("gap_jitter", "batch_jitter", "message_2_after_hours_seconds"):
            _require(_finite_at_least_zero(getattr(self, name)), f"{name} must be finite and >= 0")
        _require(self.batch_jitter <= 1, "batch_jitter must be <= 1")

    @property
    def gap(self) -> timedelta:
        return timedelta(seconds=self.gap_seconds)

    @property
    def step_after_batch(self) -> timedelta:
        """From the last send of a full batch to the next send: the pause, never below the gap."""
        return max(self.gap, timedelta(seconds=self.batch_pause_seconds))

    @property
    def jittered(self) -> bool:
        return bool(self.gap_jitter or self.batch_jitter)

    def limit_on(self, day: date | None) -> int:
        """The daily limit of UTC `day`: a young number's warm-up step, never above the
        device's own limit; the device's own limit past the table (or with `day` None)."""
        if day is None or self.number_since is None:
            return self.daily_limit
        age = max((day - self.number_since).days, 0)
        for first, last, limit in self.warmup:
            if first <= age <= last:
                return min(limit, self.daily_limit)
        return self.daily_limit

    def warming_up(self, day: date) -> bool:
        return self.limit_on(day) < self.daily_limit

    def reserve_on(self, day: date | None) -> int:
        """The Message 2 reserve of `day`: the same share of a warm-up day's limit."""
        limit = self.limit_on(day)
        if limit == self.daily_limit:
            return self.message_2_reserve
        return _warm_up_reserve(limit, self.message_2_reserve, self.daily_limit)

    def allowance(self, kind: Kind, day: date | None = None) -> int:
        """Sends of `kind` a fresh UTC day allows: Message 1 never eats into the reserve."""
        if Kind(kind) is Kind.MESSAGE_2:
            return self.limit_on(day)
        return self.limit_on(day) - self.reserve_on(day)

    @property
    def batch_sizes(self) -> range:
        """The batch sizes jitter may draw from: [batch × (1 − jitter), batch], at least 1."""
        smallest = max(math.ceil(self.batch_size * (1 - self.batch_jitter) - 1e-9), 1)
        return range(smallest, self.batch_size + 1)

    @property
    def longest_gap(self) -> timedelta:
        return timedelta(seconds=self.gap_seconds * (1 + self.gap_jitter))

    def mean(self) -> PacingPolicy:
        """The policy at jitter's mean (estimates): the mean gap, the mean batch size, rounded
        down so that an estimate is never earlier than the jittered policy's mean."""
        sizes = self.batch_sizes
        return replace(
            self,
            gap_seconds=self.gap_seconds * (1 + self.gap_jitter / 2),
            batch_size=max(math.floor((sizes[0] + sizes[-1]) / 2), 1),
            gap_jitter=0.0,
            batch_jitter=0.0,
        )

    def message_1_may_go(self, at: datetime) -> datetime:
        return window_opens_at(self.window, self.zone, at)

    def may_go(self, kind: Kind, at: datetime, replied_at: datetime | None) -> datetime:
        """`at` if the window (or, for a Message 2, its reply's allowance) lets `kind` go
        then, else the window's next opening."""
        if Kind(kind) is Kind.MESSAGE_2 and replied_at is not None:
            if at <= _utc(replied_at, "replied_at") + timedelta(seconds=self.message_2_after_hours_seconds):
                return at
        return window_opens_at(self.window, self.zone, at)


@dataclass(frozen=True)
class DeviceState:
    """What pacing needs to know about a device's past sends."""

    last_sent_at: datetime | None = None
    sent_in_batch: int = 0  # sends since the last batch pause ended
    day: date | None = None  # the UTC date the two counters below belong to
    message_1_today: int = 0
    message_2_today: int = 0
    paused_until: datetime | None = None  # batch pause or a rate-limit wait imposed from outside
    next_gap_seconds: float | None = None  # jitter's draw for the gap after the last send
    batch_target: int | None = None  # jitter's draw for the size of the current batch

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
    day = _utc(now, "now").date()
    message_1, message_2 = state.sent_on(day)
    return _room(policy, day, message_1=message_1, message_2=message_2, kind=Kind(kind))


def pacing_decide(
    *,
    policy: PacingPolicy,
    state: DeviceState,
    now: datetime,
    kind: Kind,
    replied_at: datetime | None = None,
) -> Decision:
    """Whether a send of `kind` may happen at `now`, and if not, the earliest time it may.

    `replied_at`: for a Message 2, when its contact wrote (it may go out of the window for a
    while after); None keeps it to the window, like a Message 1.
    """
    now, kind = _utc(now, "now"), Kind(kind)
    earliest = _earliest_send(policy, state, now)
    allowed = _first_allowed(policy, state, kind, earliest, replied_at)
    if pacing_remaining_today(policy=policy, state=state, now=now, kind=kind) == 0:
        return Decision(Action.DAILY_LIMIT, allowed)
    if allowed > earliest:
        return Decision(Action.WINDOW_CLOSED, allowed)
    if earliest > now:
        return Decision(_wait_action(state, earliest), earliest)
    return Decision(Action.SEND, now)


def pacing_record_send(
    *,
    policy: PacingPolicy,
    state: DeviceState,
    now: datetime,
    kind: Kind,
    rng: random.Random | None = None,
) -> DeviceState:
    """The state after a send of `kind` at `now`; a full batch starts the batch pause.

    It records what happened and does not re-check the policy: the send already took place.
    With `rng` and jitter, the next gap and (at a batch's start) the batch's size are drawn
    and kept in the state; without, the floors are kept exactly.
    """
    now, kind = _utc(now, "now"), Kind(kind)
    message_1, message_2 = state.sent_on(now.date())
    target = state.batch_target
    if target is None and state.sent_in_batch == 0:
        target = _draw_batch(policy, rng)
    batch_full = state.sent_in_batch + 1 >= _batch_size_now(policy, target)
    pause_end = now + timedelta(seconds=policy.batch_pause_seconds)
    return replace(
        state,
        last_sent_at=now,
        sent_in_batch=0 if batch_full else state.sent_in_batch + 1,
        day=now.date(),
        message_1_today=message_1 + (kind is Kind.MESSAGE_1),
        message_2_today=message_2 + (kind is Kind.MESSAGE_2),
        paused_until=_later(state.paused_until, pause_end) if batch_full else state.paused_until,
        next_gap_seconds=_draw_gap(policy, rng),
        batch_target=_draw_batch(policy, rng) if batch_full else target,
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
    """When the last of the pending messages will have been sent, at the fastest pace allowed
    (jitter at its mean), in the send window.

    Message 2 goes first, as the senders do, and is kept to the window (its replies are not
    known yet). Exact for that greedy schedule, and computed an open stretch at a time (a
    closed form plus a binary search per stretch: a UTC day, or the part of it the window is
    open), because launch asks it for 100,000 messages while the operator waits. `now`
    itself when nothing is pending.
    """
    return pacing_plan_days(
        policy=policy, state=state, now=now, message_1=message_1, message_2=message_2
    ).finish


@dataclass(frozen=True)
class DayPlan:
    """Sends of one UTC day in an estimate, and whether warm-up lowered that day's limit."""

    day: date
    sends: int
    limit: int
    warming_up: bool


@dataclass(frozen=True)
class Estimate:
    finish: datetime
    days: tuple[DayPlan, ...]


def pacing_plan_days(
    *,
    policy: PacingPolicy,
    state: DeviceState,
    now: datetime,
    message_1: int,
    message_2: int = 0,
) -> Estimate:
    """`pacing_estimate_finish`, with the sends of each UTC day (the launch page's plan)."""
    now = _utc(now, "now")
    _check_estimable(policy, message_1=message_1, message_2=message_2)
    run = _first_run(policy, state, now, message_1=message_1, message_2=message_2)
    paced = policy.mean() if policy.jittered else policy
    last, days = now, {}
    while run.message_1 + run.message_2 > 0:
        run, last, sent, day = _send_one_stretch(paced, run, last)
        if sent:
            days[day] = days.get(day, 0) + sent
    plan = tuple(
        DayPlan(day, sends, policy.limit_on(day), policy.warming_up(day)) for day, sends in days.items()
    )
    return Estimate(last, plan)


# --- helpers ---------------------------------------------------------------------------------


@lru_cache(maxsize=256)
def _warm_up_reserve(limit: int, reserve: int, daily_limit: int) -> int:
    # Cached: exact fractions cost more than the rest of a decision, asked at every send.
    return reserve_for(limit, Fraction(reserve, daily_limit))


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


def _draw_gap(policy: PacingPolicy, rng: random.Random | None) -> float | None:
    if rng is None or not policy.gap_jitter:
        return None
    return policy.gap_seconds * (1 + rng.uniform(0, policy.gap_jitter))


def _draw_batch(policy: PacingPolicy, rng: random.Random | None) -> int | None:
    if rng is None or not policy.batch_jitter:
        return None
    sizes = policy.batch_sizes
    return rng.randint(sizes[0], sizes[-1])


def _batch_size_now(policy: PacingPolicy, target: int | None) -> int:
    """The current batch's size: the draw kept in the state, within today's bounds."""
    if target is None:
        return policy.batch_size
    sizes = policy.batch_sizes
    return min(max(target, sizes[0]), sizes[-1])


def _gap_after_last(policy: PacingPolicy, state: DeviceState) -> timedelta:
    """The drawn gap, within today's bounds: never under the floor, whatever was stored."""
    if state.next_gap_seconds is None:
        return policy.gap
    return min(max(timedelta(seconds=state.next_gap_seconds), policy.gap), policy.longest_gap)


def _room(policy: PacingPolicy, day: date, *, message_1: int, message_2: int, kind: Kind) -> int:
    """Sends of `kind` still allowed on a day that has seen these sends."""
    total_left = policy.limit_on(day) - message_1 - message_2
    if kind is Kind.MESSAGE_1:
        total_left = min(total_left, policy.allowance(Kind.MESSAGE_1, day) - message_1)
    return max(total_left, 0)


def _earliest_send(policy: PacingPolicy, state: DeviceState, now: datetime) -> datetime:
    """The earliest time the gap and any pause allow, quotas and window aside."""
    earliest = now
    if state.last_sent_at is not None:
        earliest = max(earliest, state.last_sent_at + _gap_after_last(policy, state))
    if state.paused_until is not None:
        earliest = max(earliest, state.paused_until)
    return earliest


def _first_allowed(
    policy: PacingPolicy, state: DeviceState, kind: Kind, at: datetime, replied_at: datetime | None
) -> datetime:
    """The first time from `at` on that the window and the quota of its UTC day allow `kind`.

    A new day's counters start at zero, so the next midnight is enough, unless warm-up days
    allow no send of this kind at all (a tiny step whose reserve takes it all): the allowance
    only changes where a warm-up step begins or ends, so those days are the ones to try.
    Only an allowance of zero for good refuses then, and no later time would do better.
    """
    at = policy.may_go(kind, at, replied_at)
    if pacing_remaining_today(policy=policy, state=state, now=at, kind=kind) > 0:
        return at
    midnight = next_utc_midnight(at)
    for day in _allowance_changes(policy, midnight.date()):
        at = policy.may_go(kind, max(at, datetime.combine(day, time(0), tzinfo=UTC)), replied_at)
        if pacing_remaining_today(policy=policy, state=state, now=at, kind=kind) > 0:
            return at
    return midnight


def _allowance_changes(policy: PacingPolicy, first: date) -> list[date]:
    """`first`, and the later days a warm-up step begins or ends on, in order."""
    since = policy.number_since
    edges = (
        set()
        if since is None
        else {
            since + timedelta(days=d)
            for first_day, last_day, _ in policy.warmup
            for d in (first_day, last_day + 1)
        }
    )
    return [first, *sorted(day for day in edges if day > first)]


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

    start: datetime  # the time of the next send, if its UTC day's quota and the window allow it
    position: int  # sends already in the current batch
    day: date  # the UTC day the two counters below belong to
    message_1_today: int
    message_2_today: int
    message_1: int  # still pending
    message_2: int


def _first_run(
    policy: PacingPolicy, state: DeviceState, now: datetime, *, message_1: int, message_2: int
) -> _Run:
    start = _earliest_send(policy, state, now)
    sent_1, sent_2 = state.sent_on(start.date())
    # A batch size lowered below the state's count pauses after the very next send.
    size = _batch_size_now(policy, state.batch_target)
    position = min(state.sent_in_batch, size - 1)
    if policy.jittered:  # the estimate's batches are the mean's: keep the count within it
        position = min(position, policy.mean().batch_size - 1)
    return _Run(start, position, start.date(), sent_1, sent_2, message_1, message_2)


def _send_one_stretch(policy: PacingPolicy, run: _Run, last: datetime) -> tuple[_Run, datetime, int, date]:
    """Send what the window's open stretch from run.start, within its UTC day, allows;
    return the next run, the last send, the sends made and their UTC day."""
    start = policy.message_1_may_go(run.start)
    if start.date() != run.day:
        run = replace(run, day=start.date(), message_1_today=0, message_2_today=0)
    run = replace(run, start=start)
    midnight = next_utc_midnight(start)
    closes = window_closes_at(policy.window, policy.zone, start)
    end = midnight if closes is None else min(closes, midnight)
    sendable = _sendable_today(policy, run)
    sent = bisect_left(range(sendable), end, key=lambda index: _send_time(policy, run, index))
    if sent == 0:  # the day's quota was spent before the run began
        return replace(run, start=midnight), last, 0, start.date()
    last = _send_time(policy, run, sent - 1)
    position = (run.position + sent) % policy.batch_size
    after = last + (policy.step_after_batch if position == 0 else policy.gap)
    sent_2 = min(sent, run.message_2)
    pending_1, pending_2 = run.message_1 - (sent - sent_2), run.message_2 - sent_2
    # Stopped by the quota: the next send is on a later day; by the window's close or by
    # midnight: at the next stretch, which starts no earlier than the end of this one.
    resume = midnight if sent == sendable else end
    counts = {
        "message_1_today": run.message_1_today + sent - sent_2,
        "message_2_today": run.message_2_today + sent_2,
    }
    following = replace(
        run, start=max(after, resume), position=position, message_1=pending_1, message_2=pending_2, **counts
    )
    return following, last, sent, start.date()


def _sendable_today(policy: PacingPolicy, run: _Run) -> int:
    """How many of the pending sends (Message 2 first) the quota of run.day allows."""
    sent_1, sent_2 = run.message_1_today, run.message_2_today
    room_2 = _room(policy, run.day, message_1=sent_1, message_2=sent_2, kind=Kind.MESSAGE_2)
    message_2 = min(run.message_2, room_2)
    # Message 2s that do not fit use up the whole day, which leaves room_1 at zero.
    room_1 = _room(policy, run.day, message_1=sent_1, message_2=sent_2 + message_2, kind=Kind.MESSAGE_1)
    return message_2 + min(run.message_1, room_1)


def _send_time(policy: PacingPolicy, run: _Run, index: int) -> datetime:
    """Time of the run's `index`-th send (from 0) if nothing stops it: the gap between sends,
    the longer step after each full batch. Whole timedeltas, so it matches send-by-send sums."""
    pauses = (run.position + index) // policy.batch_size
    return run.start + index * policy.gap + pauses * (policy.step_after_batch - policy.gap)
