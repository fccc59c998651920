"""A 5,000-message campaign on one brand-new device with the default pacing, simulated.

Driven through the real pure policy (messaging/pacing.py: pacing_decide, pacing_record_send
with a seeded random source) on a simulated clock: no sleeping, no database. It starts on a
Monday at 10:00 in Paris, so the clocks go forward mid-campaign. Against it, an ideal
schedule computed here from the same rules, on their own terms: each UTC day sends what its
warm-up limit leaves after the Message 2 reserve, from the window's opening (09:00 Paris,
converted for that day), one mean gap apart with a mean batch pause after each mean batch,
the count of the current batch carried over from day to day.

Every send of the simulation is checked against the rules (counted and printed): Message 1
inside the window (its wall time in Paris), no gap under 25 s nor over the jitter's 35 s
within a batch, no batch over 25 nor under 20, the 300 s pause after each, never over the
day's warm-up limit nor into the reserve. Goals: finish within 1% of the ideal, and zero
violations.

    python bench/pacing_simulation.py [--messages 5000] [--seed 21]
"""

import argparse
import math
import os
import random
import sys
import time as wall_clock
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: F401  (puts the project on the path)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
from django.conf import settings

from messaging import pacing

START = datetime(2026, 3, 23, 10, 0, tzinfo=ZoneInfo("Europe/Paris"))  # the clocks change on the 29th


def default_policy(number_since: date) -> pacing.PacingPolicy:
    """What a new device gets from the settings' defaults (as messaging.claims.device_policy)."""
    limit = settings.DEVICE_DAILY_LIMIT
    return pacing.PacingPolicy(
        gap_seconds=settings.DEVICE_GAP_SECONDS,
        batch_size=settings.DEVICE_BATCH_SIZE,
        batch_pause_seconds=settings.DEVICE_BATCH_PAUSE_SECONDS,
        daily_limit=limit,
        message_2_reserve=pacing.reserve_for(limit, settings.MESSAGE_2_RESERVE_SHARE),
        window=pacing.parse_window(settings.DEVICE_SEND_WINDOW),
        zone=ZoneInfo(settings.DEVICE_TIME_ZONE),
        message_2_after_hours_seconds=settings.MESSAGE_2_AFTER_HOURS_MINUTES * 60,
        gap_jitter=settings.DEVICE_GAP_JITTER,
        batch_jitter=settings.DEVICE_BATCH_JITTER,
        warmup=pacing.parse_warmup(settings.DEVICE_WARMUP),
        number_since=number_since,
    )


# --- The simulation: the real policy, a simulated clock ---------------------------------------


def simulate(
    policy: pacing.PacingPolicy, messages: int, seed: int
) -> list[tuple[datetime, pacing.DeviceState]]:
    """Every send's time and the device's state just after it."""
    rng, state, now, sends = random.Random(seed), pacing.DeviceState(), START.astimezone(UTC), []
    while len(sends) < messages:
        decision = pacing.pacing_decide(policy=policy, state=state, now=now, kind=pacing.Kind.MESSAGE_1)
        if decision.action is pacing.Action.SEND:
            state = pacing.pacing_record_send(
                policy=policy, state=state, now=now, kind=pacing.Kind.MESSAGE_1, rng=rng
            )
            sends.append((now, state))
        else:
            now = decision.not_before
    return sends


# --- The ideal, from the rules themselves ---------------------------------------------------------


def _rules() -> dict:
    steps = []
    for part in settings.DEVICE_WARMUP.split(","):
        days, limit = part.split(":")
        first, last = days.split("-")
        steps.append((int(first), int(last), int(limit)))
    open_hours, _, close_hours = settings.DEVICE_SEND_WINDOW.split()[1].partition("-")
    return {"warmup": steps, "opens": open_hours, "closes": close_hours}


def _limit(rules: dict, age: int) -> tuple[int, int]:
    """(limit, Message 1 allowance) of a number `age` days old: the table, then the device's own."""
    own = settings.DEVICE_DAILY_LIMIT
    limit = next((min(n, own) for first, last, n in rules["warmup"] if first <= age <= last), own)
    share = Fraction(str(settings.MESSAGE_2_RESERVE_SHARE))
    return limit, limit - math.ceil(limit * share)


def _wall(day: date, hours: str) -> datetime:
    hour, minute = map(int, hours.split(":"))
    return datetime(
        day.year, day.month, day.day, hour, minute, tzinfo=ZoneInfo(settings.DEVICE_TIME_ZONE)
    ).astimezone(UTC)


def ideal_finish(messages: int) -> datetime:
    """The last send of the ideal schedule (the window within one UTC day here: Paris 09–20 h)."""
    rules = _rules()
    gap = settings.DEVICE_GAP_SECONDS * (1 + settings.DEVICE_GAP_JITTER / 2)
    smallest = math.ceil(settings.DEVICE_BATCH_SIZE * (1 - settings.DEVICE_BATCH_JITTER))
    batch = (smallest + settings.DEVICE_BATCH_SIZE) / 2
    pause = max(settings.DEVICE_BATCH_PAUSE_SECONDS, gap)
    left, day, in_batch, start = messages, START.date(), 0.0, START.astimezone(UTC)
    while True:
        _, allowance = _limit(rules, (day - START.date()).days)
        opens, closes = max(_wall(day, rules["opens"]), start), _wall(day, rules["closes"])
        today, clock = min(left, allowance), opens
        for index in range(today):
            if index:
                clock += timedelta(seconds=pause if in_batch == 0 else gap)
            assert clock < closes, "a day's quota fits in the window with the defaults"
            in_batch = (in_batch + 1) % batch if in_batch + 1 < batch else 0.0
        left -= today
        if left == 0:
            return clock
        day += timedelta(days=1)


# --- The rules, checked on every send ------------------------------------------------------------


def violations(policy: pacing.PacingPolicy, sends) -> dict[str, int]:
    rules, zone = _rules(), ZoneInfo(settings.DEVICE_TIME_ZONE)
    found = dict.fromkeys(
        [
            "outside window",
            "gap under floor",
            "gap over jitter",
            "batch over size",
            "batch under size",
            "pause too short",
            "over daily limit",
            "into the reserve",
        ],
        0,
    )
    per_day, in_batch, after_batch = {}, 0, False
    for index, (moment, state) in enumerate(sends):
        local = moment.astimezone(zone)
        found["outside window"] += not (rules["opens"] <= f"{local:%H:%M}" < rules["closes"])
        per_day[moment.date()] = per_day.get(moment.date(), 0) + 1
        if index:
            step = (moment - sends[index - 1][0]).total_seconds()
            found["gap under floor"] += step < settings.DEVICE_GAP_SECONDS
            if after_batch:
                found["pause too short"] += step < settings.DEVICE_BATCH_PAUSE_SECONDS
            elif (
                moment.date() == sends[index - 1][0].date()
                and local.date() == sends[index - 1][0].astimezone(zone).date()
            ):
                found["gap over jitter"] += (
                    step > settings.DEVICE_GAP_SECONDS * (1 + settings.DEVICE_GAP_JITTER) + 1e-6
                )
        in_batch += 1
        after_batch = state.sent_in_batch == 0
        if after_batch:
            found["batch over size"] += in_batch > settings.DEVICE_BATCH_SIZE
            found["batch under size"] += in_batch < math.ceil(
                settings.DEVICE_BATCH_SIZE * (1 - settings.DEVICE_BATCH_JITTER)
            )
            in_batch = 0
    for day, count in per_day.items():
        limit, allowance = _limit(rules, (day - START.date()).days)
        found["over daily limit"] += count > limit
        found["into the reserve"] += count > allowance
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=21)
    options = parser.parse_args()
    policy = default_policy(START.date())
    began = wall_clock.perf_counter()
    sends = simulate(policy, options.messages, options.seed)
    seconds = wall_clock.perf_counter() - began
    finish, ideal = sends[-1][0], ideal_finish(options.messages)
    start = START.astimezone(UTC)
    hours, ideal_hours = (finish - start).total_seconds() / 3600, (ideal - start).total_seconds() / 3600
    found = violations(policy, sends)
    estimate = pacing.pacing_estimate_finish(
        policy=policy, state=pacing.DeviceState(), now=start, message_1=options.messages
    )
    deviation = abs(hours / ideal_hours - 1)
    harness.report(
        name="pacing_simulation",
        unit="h",
        value=hours,
        baseline=ideal_hours,
        goal=0.99,
        measured=f"hours from start to the last of {options.messages:,} Message 1 on one new device with the "
        "default pacing (window, jitter, warm-up, reserve), the real policy on a simulated clock",
        baseline_is="the ideal schedule computed independently from the same rules",
        also={
            f"finish within 1% of the ideal ({deviation:.3%})": deviation <= 0.01,
            f"zero violations of the rules ({sum(found.values())})": not any(found.values()),
        },
        messages=options.messages,
        seed=options.seed,
        start=start.isoformat(),
        finish=finish.isoformat(),
        ideal_finish=ideal.isoformat(),
        estimated_finish=estimate.isoformat(),
        days=(finish.date() - start.date()).days + 1,
        violations=found,
        simulation_seconds=round(seconds, 3),
    )


if __name__ == "__main__":
    main()
