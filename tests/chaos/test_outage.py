"""Scenario: Wassenger unreachable in the middle of a campaign, twice, then back.

The sandbox process is stopped (SIGTERM: every request is refused meanwhile) and started again
on the same port with the same state file (what it took survives, as Wassenger's own database
would). A frozen Wassenger (SIGSTOP: connections open, nothing answers, every request times
out) is the other kind of outage, also played. A real sender loop keeps sending around it,
the one-minute dispatcher is ticked by the test. From the sandbox's own record: no message
failed, none was sent twice, every contact got its Message 1, and while Wassenger was away
the device probed once per wait of its breaker, not once per message.

The 2-hour outage of issue 19 runs on a clock shrunk 480 times (15 s; the breaker's 60 s to
30 min become 0.125 to 3.75 s), and prints its figures (`-s`).
"""

import os
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from messaging.dispatch import dispatch_run
from messaging.models import ACCEPTED_STATUSES, Message, MessageAttempt, MessageStatus
from tests.chaos.conftest import accepted_by_phone, assert_counters_match_accepted_sends
from tests.clusters import SenderCluster, run_until_settled, settings_shrink
from tests.messaging.conftest import SANDBOX_TOKEN, start_sandbox, wait_for
from tests.messaging.test_send_engine_loop import devices_with_campaigns

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

PACING = {"gap_seconds": 0.02, "batch_size": 25, "batch_pause_seconds": 0.2}
# A 2-hour outage, every wait shrunk 480 times: 15 s, the breaker from 0.125 s to 3.75 s.
SHRUNK = 480
SHRUNK_WAITS = {
    "RETRY_BASE_SECONDS": str(60 / SHRUNK),
    "RATE_LIMIT_MIN_WAIT_SECONDS": str(60 / SHRUNK),
    "DEVICE_BREAKER_BASE_SECONDS": str(60 / SHRUNK),
    "DEVICE_BREAKER_MAX_SECONDS": str(30 * 60 / SHRUNK),
    "DEVICE_UNREACHABLE_INCIDENT_SECONDS": str(5 * 60 / SHRUNK),
    "SENDER_LEASE_SECONDS": "1",
    "RECONCILE_AFTER_SECONDS": "0.25",
}


class RestartableSandbox:
    """The sandbox process, which an outage stops and starts again at the same address."""

    def __init__(self, state_file: Path) -> None:
        self.flags = ("--webhook-url", "", "--seed", "8", "--state-file", str(state_file))
        self.server = start_sandbox(*self.flags)
        self.url = self.server.url

    def __getattr__(self, name):  # control(), messages(), process: the current process's
        return getattr(self.server, name)

    def stop(self) -> None:
        assert self.server.stop() == 0, "the sandbox did not stop cleanly"

    def start(self) -> None:
        port = self.url.rsplit(":", 1)[1]
        self.server = start_sandbox(*self.flags, "--port", port)

    def freeze(self, frozen: bool) -> None:
        os.kill(self.server.process.pid, signal.SIGSTOP if frozen else signal.SIGCONT)


@pytest.fixture
def sandbox(settings, tmp_path):
    server = RestartableSandbox(tmp_path / "wassenger.json")
    settings.WASSENGER_API_URL, settings.WASSENGER_API_TOKEN = f"{server.url}/v1", SANDBOX_TOKEN
    yield server
    server.freeze(False)
    server.server.stop()


def outage(sandbox, seconds: float, how: str) -> tuple[float, float]:
    """Wassenger away for `seconds` (the dispatcher keeps ticking); the outage's window."""
    sandbox.stop() if how == "stopped" else sandbox.freeze(True)
    began = time.time()
    while time.time() < began + seconds:
        dispatch_run()  # lookups fail within the tick's budget, nothing settles wrongly
        time.sleep(0.3)
    ended = time.time()
    sandbox.start() if how == "stopped" else sandbox.freeze(False)
    return began, ended


def campaign_through_outages(
    sandbox, settings, *, at: tuple[int, ...], seconds: float, how: str = "stopped", **shrunk
) -> dict:
    env = settings_shrink(settings, RECONCILE_LOOKUP_TIMEOUT="1", DISPATCH_BUDGET_SECONDS="2", **shrunk)
    devices = devices_with_campaigns([{**PACING, "messages": 150}] * 2, prefix="64")
    loop = SenderCluster(sandbox.url, **env)
    loop.start()
    windows = []
    try:
        for accepted in at:
            wait_for(lambda n=accepted: sandbox.control("GET", "stats")["messages"] >= n, timeout=60)
            windows.append(outage(sandbox, seconds, how))
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


@pytest.mark.parametrize("how", ["stopped", "frozen"])
def test_two_outages_during_a_300_message_campaign_fail_nothing_and_send_nothing_twice(
    sandbox, settings, how
):
    run = campaign_through_outages(sandbox, settings, at=(80, 200), seconds=4, how=how)
    assert_nothing_lost_nothing_doubled(sandbox, run)
    # Each device probed a few times per outage (its breaker's waits: 0.2, 0.4, 0.8 … s, each
    # probe waiting out a 2 s timeout), not once for each of the messages due meanwhile.
    assert run["probes"] and max(run["probes"].values()) <= 4, run["probes"]


def test_a_2_hour_outage_on_a_shrunk_clock_fails_nothing_and_probes_once_per_wait(sandbox, settings):
    run = campaign_through_outages(sandbox, settings, at=(100,), seconds=2 * 3600 / SHRUNK, **SHRUNK_WAITS)
    assert_nothing_lost_nothing_doubled(sandbox, run)
    failed = Message.objects.filter(status=MessageStatus.FAILED).count()
    figures = {"failed": failed, "requests": run["requests"], "probes": dict(run["probes"])}
    print(f"\n2-hour outage (shrunk {SHRUNK}x): {figures}")
    # Waits of 0.125 + 0.25 + 0.5 + 1 + 2 + 3.75 + 3.75 + 3.75 s cover the 15 s: one probe each.
    assert max(run["probes"].values()) <= 10, run["probes"]
