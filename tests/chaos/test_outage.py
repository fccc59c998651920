"""Scenario: Wassenger unreachable in the middle of a campaign, twice, then back.

The sandbox process is stopped (SIGSTOP: it answers nothing, as a Wassenger that went away;
its record of what it took survives) and started again (SIGCONT). A real sender loop keeps
sending around it, the one-minute dispatcher is ticked by the test. From the sandbox's own
record: no message failed, none was sent twice, every contact got its Message 1, and while
Wassenger was away the device probed once per wait of its breaker, not once per message.

RELANCE_LONG_OUTAGE=1 also runs the 2-hour outage of issue 19 on a clock shrunk 120 times
(60 s; the breaker's 60 s to 30 min become 0.5 to 15 s), and prints its figures.
"""

import os
import signal
import time
from collections import Counter

import pytest

from messaging.dispatch import dispatch_run
from messaging.models import ACCEPTED_STATUSES, Message, MessageAttempt, MessageStatus
from tests.chaos.conftest import accepted_by_phone, assert_counters_match_accepted_sends
from tests.clusters import SenderCluster, run_until_settled, settings_shrink
from tests.messaging.conftest import SANDBOX_TOKEN, start_sandbox, wait_for
from tests.messaging.test_send_engine_loop import devices_with_campaigns

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

PACING = {"gap_seconds": 0.02, "batch_size": 25, "batch_pause_seconds": 0.2}
# A 2-hour outage, every wait shrunk 120 times: 60 s, the breaker from 0.5 s to 15 s.
SHRUNK_120 = {
    "RETRY_BASE_SECONDS": "0.5",
    "RATE_LIMIT_MIN_WAIT_SECONDS": "0.5",
    "DEVICE_BREAKER_BASE_SECONDS": "0.5",
    "DEVICE_BREAKER_MAX_SECONDS": "15",
    "DEVICE_UNREACHABLE_INCIDENT_SECONDS": "2.5",
    "SENDER_LEASE_SECONDS": "1",
    "RECONCILE_AFTER_SECONDS": "0.25",
}


@pytest.fixture
def sandbox(settings):
    server = start_sandbox("--webhook-url", "", "--seed", "8")
    settings.WASSENGER_API_URL, settings.WASSENGER_API_TOKEN = f"{server.url}/v1", SANDBOX_TOKEN
    yield server
    os.kill(server.process.pid, signal.SIGCONT)
    server.stop()


def outage(sandbox, seconds: float) -> tuple[float, float]:
    """Wassenger answers nothing for `seconds` (the dispatcher keeps ticking); its window."""
    os.kill(sandbox.process.pid, signal.SIGSTOP)
    began = time.time()
    while time.time() < began + seconds:
        dispatch_run()  # lookups time out within the tick's budget, nothing settles wrongly
        time.sleep(0.3)
    os.kill(sandbox.process.pid, signal.SIGCONT)
    return began, time.time()


def campaign_through_outages(sandbox, settings, *, at: tuple[int, ...], seconds: float, **shrunk) -> dict:
    env = settings_shrink(settings, RECONCILE_LOOKUP_TIMEOUT="1", DISPATCH_BUDGET_SECONDS="2", **shrunk)
    devices = devices_with_campaigns([{**PACING, "messages": 150}] * 2, prefix="64")
    loop = SenderCluster(sandbox.url, **env)
    loop.start()
    windows = []
    try:
        for accepted in at:
            wait_for(lambda n=accepted: sandbox.control("GET", "stats")["messages"] >= n, timeout=60)
            windows.append(outage(sandbox, seconds))
        run_until_settled(sandbox, loop, deadline_seconds=120)
    finally:
        loop.kill()
    # Requests sent while Wassenger was away, per device and outage (the claims' times).
    probes = Counter()
    for device_id, started in MessageAttempt.objects.values_list("message__device_id", "started_at"):
        for index, (began, ended) in enumerate(windows):
            if began <= started.timestamp() <= ended:
                probes[(device_id, index)] += 1
    requests = sandbox.control("GET", "sends")
    return {"devices": devices, "probes": probes, "requests": len(requests), "windows": windows}


def assert_nothing_lost_nothing_doubled(sandbox, run: dict) -> None:
    phones = Message.objects.values_list("contact__phone", flat=True)
    assert accepted_by_phone(sandbox) == dict.fromkeys(phones, 1)  # every contact, once
    statuses = Counter(Message.objects.values_list("status", flat=True))
    assert set(statuses) <= set(ACCEPTED_STATUSES) and statuses.total() == 300, statuses  # none failed
    assert_counters_match_accepted_sends()


def test_two_outages_during_a_300_message_campaign_fail_nothing_and_send_nothing_twice(sandbox, settings):
    run = campaign_through_outages(sandbox, settings, at=(80, 200), seconds=4)
    assert_nothing_lost_nothing_doubled(sandbox, run)
    # Each device probed a few times per outage (its breaker's waits: 0.2, 0.4, 0.8 … s, each
    # probe waiting out a 2 s timeout), not once for each of the messages due meanwhile.
    assert run["probes"] and max(run["probes"].values()) <= 4, run["probes"]


@pytest.mark.skipif(not os.environ.get("RELANCE_LONG_OUTAGE"), reason="a minute long: RELANCE_LONG_OUTAGE=1")
def test_a_2_hour_outage_on_a_clock_shrunk_120_times(sandbox, settings):
    run = campaign_through_outages(sandbox, settings, at=(100,), seconds=60, **SHRUNK_120)
    assert_nothing_lost_nothing_doubled(sandbox, run)
    failed = Message.objects.filter(status=MessageStatus.FAILED).count()
    figures = {"failed": failed, "requests": run["requests"], "probes": dict(run["probes"])}
    print(f"\n2-hour outage (shrunk 120x): {figures}")
    assert max(run["probes"].values()) <= 12, run["probes"]  # 0.5 + 1 + 2 + 4 + 8 + 15 + 15 + 15 s
