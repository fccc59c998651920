"""Scenario: the sender loop is stopped (SIGTERM, SIGINT) in the middle of a batch.

A real `manage.py run_senders` on the sandbox, its send in flight held by a slow answer when
the signal comes: it records that send, claims nothing more, releases its leases and exits
within 2 s, leaving nothing `sending`. Started again, it continues the batch: the gap after
the last send before the stop and the pause at the batch's end both hold, and no contact
gets Message 1 twice. `make run` stops the senders before the sandbox they talk to.
"""

import signal
import sys
import time
from pathlib import Path

import pytest

from messaging.models import Device, Message, MessageStatus
from messaging.models import SenderLoop as Presence
from monitoring.supervisor import Child, Supervisor
from tests.chaos.conftest import accepted_by_phone
from tests.clusters import SenderCluster, settings_shrink
from tests.messaging.conftest import SANDBOX_TOKEN, start_sandbox, wait_for
from tests.messaging.test_send_engine_loop import claims_by_device, devices_with_campaigns, pacing_broken

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

MESSAGES = 24
PACING = {"gap_seconds": 0.3, "batch_size": 10, "batch_pause_seconds": 2.0}


@pytest.fixture
def sandbox(settings):
    server = start_sandbox("--webhook-url", "", "--seed", "6")
    settings.WASSENGER_API_URL, settings.WASSENGER_API_TOKEN = f"{server.url}/v1", SANDBOX_TOKEN
    yield server
    server.stop()


def accepted(sandbox) -> int:
    return sandbox.control("GET", "stats")["messages"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_mid_batch_records_the_send_in_flight_and_the_next_start_keeps_the_pacing(
    sandbox, settings, signum
):
    env = settings_shrink(settings)
    (device,) = devices_with_campaigns([{**PACING, "messages": MESSAGES}], prefix="39")
    loop = SenderCluster(sandbox.url, **env)
    loop.start()
    wait_for(lambda: accepted(sandbox) >= 4, timeout=30, interval=0.02)
    sandbox.set_faults(slow=1, slow_seconds=0.8)  # the next send hangs after the sandbox took it
    wait_for(lambda: Message.objects.filter(status=MessageStatus.SENDING).exists(), timeout=10, interval=0.01)
    took = loop.stop(signum)
    assert took < 2.0, f"the loop took {took:.2f} s to stop"
    assert loop.process.returncode == 0
    assert not Message.objects.filter(status=MessageStatus.SENDING).exists()
    assert not Device.objects.exclude(lease_owner="").exists() and not Presence.objects.exists()
    sent_before = Message.objects.filter(status=MessageStatus.SENT).count()
    assert sent_before == accepted(sandbox)  # the send in flight was recorded, nothing more claimed
    assert 0 < Device.objects.get(pk=device.pk).sent_in_batch < PACING["batch_size"]  # mid-batch

    sandbox.set_faults(slow=0)
    loop.start()
    try:
        wait_for(lambda: Message.objects.filter(status=MessageStatus.SENT).count() == MESSAGES, timeout=60)
    finally:
        loop.stop()
    phones = Message.objects.values_list("contact__phone", flat=True)
    assert accepted_by_phone(sandbox) == dict.fromkeys(phones, 1)
    assert pacing_broken(claims_by_device()[device.pk], Device.objects.get(pk=device.pk)) == []


def test_make_run_stops_the_senders_before_the_sandbox(tmp_path: Path):
    """The supervisor waits for the senders to exit before it signals anything else."""
    log = tmp_path / "order.log"
    script = (
        "import signal, sys, time\n"
        "def stop(*_):\n"
        "    time.sleep(float(sys.argv[2]))\n"
        "    open(sys.argv[3], 'a').write(sys.argv[1] + ' ' + repr(time.monotonic()) + '\\n')\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, stop)\n"
        "time.sleep(60)\n"
    )
    children = [
        Child("sandbox", [sys.executable, "-c", script, "sandbox", "0", str(log)]),
        Child("senders", [sys.executable, "-c", script, "senders", "0.5", str(log)], stop_first=True),
    ]
    for child in children:
        child.start()
    time.sleep(0.5)  # both have installed their handlers
    Supervisor(children).stop_all()
    order = [line.split()[0] for line in log.read_text().splitlines()]
    assert order == ["senders", "sandbox"]
