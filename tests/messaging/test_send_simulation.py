"""A 2,600-message, three-day campaign through the real sender code on a simulated clock.

Sleeps advance the test clock; Wassenger is faked at the HTTP boundary. The run must
break no pacing rule and finish within 1% of the ideal schedule (gaps + pauses + nights),
which the pure pacing estimate gives.
"""

from collections import Counter
from datetime import timedelta

import pytest
import responses

from campaigns.models import Contact
from messaging import pacing
from messaging.models import Message, MessageStatus
from messaging.sending import device_policy, sender_run
from tests import fake_wassenger
from tests.factories import make_device, queue_message_1
from tests.messaging.test_send_engine import sending_campaign

# Real commits, as in production: inside one test transaction every claimed row would
# leave a dead index entry that later claims must step over (quadratic time).
pytestmark = pytest.mark.django_db(transaction=True)

MESSAGES = 2600
DISPATCH_TICK = timedelta(seconds=60)


def run_like_the_cluster(device, clock) -> None:
    """The loop serves the device through its pauses; once it let the device go (its daily
    limit), it looks again a minute later."""
    for _ in range(20_000):
        if not Message.objects.filter(status=MessageStatus.PENDING).exists():
            return
        sender_run(device_id=device.pk)
        clock.advance(DISPATCH_TICK.total_seconds())
    raise AssertionError("the campaign never finished")


def pacing_violations(sends, policy) -> list[str]:
    times = [s.at for s in sends]
    problems = []
    for index, (before, after) in enumerate(zip(times, times[1:], strict=False), start=1):
        gap = (after - before).total_seconds()
        if gap < policy.gap_seconds:
            problems.append(f"send {index + 1} only {gap}s after the previous one")
        if index % policy.batch_size == 0 and gap < policy.batch_pause_seconds:
            problems.append(f"send {index + 1} starts a batch only {gap}s after the last one")
    per_day = Counter(t.date() for t in times)
    allowance = policy.allowance(pacing.Kind.MESSAGE_1)
    problems += [f"{day}: {n} sends > {allowance}" for day, n in per_day.items() if n > allowance]
    return problems


def test_a_three_day_campaign_keeps_every_pacing_rule_and_finishes_on_time(fake_clock):
    device = make_device(gap_seconds=25, batch_size=25, batch_pause_seconds=300, daily_limit=1000)
    campaign = sending_campaign(device, contacts=0)
    Contact.objects.bulk_create(Contact(phone=f"+3361{n:07d}") for n in range(MESSAGES))
    queue_message_1(campaign=campaign, contacts=Contact.objects.all())
    start, policy = fake_clock.now(), device_policy(device)
    ideal_end = pacing.pacing_estimate_finish(
        policy=policy, state=pacing.DeviceState(), now=start, message_1=MESSAGES
    )

    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        api = fake_wassenger.install(mock)
        run_like_the_cluster(device, fake_clock)

    assert len(api.accepted) == MESSAGES == len(set(api.phones()))
    assert pacing_violations(api.accepted, policy) == []
    assert len({s.at.date() for s in api.accepted}) == 3
    took, ideal = api.accepted[-1].at - start, ideal_end - start
    assert took >= ideal
    assert took <= ideal * 1.01, f"took {took}, ideal {ideal}"
