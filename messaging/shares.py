"""Sharing Message 1s between several devices so that they all finish as early as possible.

A campaign over several numbers gives each recipient one device at launch, and a device
halted for good hands its unsent Message 1s to the others (messaging/devices.py): both ask
`shares_balanced` how many each device should take. Balanced by what each device can still
send, not by equal counts: a device with less quota left today, a smaller limit, a long
queue of other campaigns (or, through the pacing module, a warm-up or a send window) gets
fewer, so that the last send of the whole campaign comes as early as the pacing allows.

Pure, like the pacing it builds on: the only model of a device's capacity is
`pacing.pacing_estimate_finish`, asked as a black box, so whatever the pacing module learns
(warm-up ramps, send windows) the shares follow without a change here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from messaging import pacing

# The shares are exact to this: two devices whose finishes differ by less are balanced.
RESOLUTION = timedelta(milliseconds=1)


@dataclass(frozen=True)
class Lane:
    """One device's pacing, state and queue ahead of the messages to share."""

    policy: pacing.PacingPolicy
    state: pacing.DeviceState
    message_1_ahead: int = 0
    message_2_ahead: int = 0

    @property
    def can_send_message_1(self) -> bool:
        return self.policy.allowance(pacing.Kind.MESSAGE_1) > 0

    def plan(self, *, now: datetime, extra: int) -> pacing.Estimate:
        """`finish`, with the sends of each UTC day."""
        return pacing.pacing_plan_days(
            policy=self.policy,
            state=self.state,
            now=now,
            message_1=self.message_1_ahead + extra,
            message_2=self.message_2_ahead,
        )

    def finish(self, *, now: datetime, extra: int) -> datetime:
        """When this device's last send would be with `extra` more Message 1 queued."""
        return pacing.pacing_estimate_finish(
            policy=self.policy,
            state=self.state,
            now=now,
            message_1=self.message_1_ahead + extra,
            message_2=self.message_2_ahead,
        )


def shares_balanced(*, lanes: list[Lane], count: int, now: datetime) -> list[int]:
    """How many of `count` Message 1 each lane takes, so that the latest finish is earliest.

    Lanes that may send no Message 1 at all take none; if no lane may, every share is 0 (the
    caller refuses). The shares add up to `count` otherwise. Found by bisecting on the finish
    time T: a lane's capacity by T is the most it can take and still be done by T (itself a
    bisection, the estimate growing with the queue), and the earliest T whose capacities add
    up to `count` is the balanced finish.
    """
    able = [index for index, lane in enumerate(lanes) if lane.can_send_message_1]
    shares = [0] * len(lanes)
    if not able or count <= 0:
        return shares
    if len(able) == 1:
        shares[able[0]] = count
        return shares
    capacities = [_Capacity(lanes[index], now, count) for index in able]
    # Invariant: by `early` (before any send can happen) the lanes take fewer than `count`,
    # by `late` (the best lane alone taking all) at least `count`.
    early, late = now - RESOLUTION, min(capacity.finish(count) for capacity in capacities)
    while late - early > RESOLUTION:
        middle = early + (late - early) / 2
        if sum(capacity.by(middle) for capacity in capacities) >= count:
            late = middle
        else:
            early = middle
    below = [capacity.by(early) for capacity in capacities]
    room = [capacity.by(late) - taken for capacity, taken in zip(capacities, below, strict=True)]
    for position, extra in enumerate(_spread(count - sum(below), room)):
        shares[able[position]] = below[position] + extra
    return shares


def _spread(count: int, room: list[int]) -> list[int]:
    """`count` spread as evenly as `room` allows: lanes that finish together share alike."""
    given = [0] * len(room)
    while count > 0:
        open_lanes = [i for i, left in enumerate(room) if left > given[i]]
        each = max(count // len(open_lanes), 1)
        for i in open_lanes:
            taken = min(each, room[i] - given[i], count)
            given[i], count = given[i] + taken, count - taken
    return given


class _Capacity:
    """One lane's finish for each queue length (memoised), and how many it can take by a time."""

    def __init__(self, lane: Lane, now: datetime, most: int):
        self.lane, self.now, self.most = lane, now, most
        self.finishes: dict[int, datetime] = {}

    def finish(self, extra: int) -> datetime:
        if extra not in self.finishes:
            self.finishes[extra] = self.lane.finish(now=self.now, extra=extra)
        return self.finishes[extra]

    def by(self, moment: datetime) -> int:
        """The most Message 1 (up to `most`) this lane can take and still finish by `moment`."""
        low, high = 0, self.most  # the finish grows with the queue: bisect for the last n in time
        while low < high:
            middle = (low + high + 1) // 2
            if self.finish(middle) <= moment:
                low = middle
            else:
                high = middle - 1
        return low
