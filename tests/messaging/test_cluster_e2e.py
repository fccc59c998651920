"""End to end: a real django-q cluster of senders, the sandbox on loopback, faults on.

Pacing is shrunk by settings (gap 0.05 s, pause 0.5 s) and so are the retry waits. The
one-minute dispatcher is ticked by the test every 0.3 s instead: same function, faster
clock. Every phone must end with exactly one accepted message, or a final failure and
none; no phone may ever receive two — also when the cluster is SIGKILLed mid-run.
"""

import time
from collections import Counter

import pytest

from campaigns.models import Contact
from messaging.dispatch import dispatch_run
from messaging.models import Message, MessageAttempt, MessageStatus
from tests.clusters import qcluster_kill, qcluster_start
from tests.factories import make_device, make_sending_campaign, queue_message_1
from tests.messaging.conftest import SANDBOX_TOKEN, start_sandbox

pytestmark = pytest.mark.django_db(transaction=True)

PER_DEVICE = 250
FAULTS = (
    "--fail-500",
    "0.1",
    "--fail-429",
    "0.05",
    "--drop-after-read",
    "0.02",
    "--retry-after-share",
    "0.5",
    "--retry-after-seconds",
    "0.3",
)
SHRUNK = {
    "RETRY_BASE_SECONDS": "0.2",
    "RATE_LIMIT_MIN_WAIT_SECONDS": "0.2",
    "SENDER_LEASE_SECONDS": "2",
    "RECONCILE_AFTER_SECONDS": "0.3",
    "WASSENGER_READ_TIMEOUT": "2",
    "WASSENGER_CONNECT_TIMEOUT": "2",
}
OPEN = (MessageStatus.PENDING, MessageStatus.SENDING, MessageStatus.UNKNOWN)


@pytest.fixture
def faulty_sandbox(settings):
    server = start_sandbox("--webhook-url", "", "--seed", "5", *FAULTS)
    settings.WASSENGER_API_URL, settings.WASSENGER_API_TOKEN = f"{server.url}/v1", SANDBOX_TOKEN
    for name, value in SHRUNK.items():
        setattr(settings, name, float(value))
    yield server
    server.stop()


class SenderCluster:
    """The senders' cluster, which the test kills and restarts."""

    def __init__(self, sandbox_url: str):
        self.sandbox_url, self.process = sandbox_url, None

    def start(self) -> None:
        self.process = qcluster_start(
            name="senders", sandbox_url=self.sandbox_url, Q_SENDER_WORKERS="2", **SHRUNK
        )

    def kill(self) -> None:
        qcluster_kill(self.process)


def two_devices_with_a_sending_campaign_each() -> None:
    Contact.objects.bulk_create(Contact(phone=f"+3362{n:07d}") for n in range(1, 2 * PER_DEVICE + 1))
    contacts = list(Contact.objects.order_by("id"))
    for index in range(2):
        device = make_device(gap_seconds=0.05, batch_size=25, batch_pause_seconds=0.5)
        campaign = make_sending_campaign(device=device, name=f"E2E {index}")
        queue_message_1(campaign=campaign, contacts=contacts[index * PER_DEVICE : (index + 1) * PER_DEVICE])


def run_until_settled(sandbox, cluster, kill_at=(), deadline_seconds=150) -> None:
    """Tick the dispatcher until nothing is open; SIGKILL and restart at the given counts."""
    kills = list(kill_at)
    deadline = time.monotonic() + deadline_seconds
    while Message.objects.filter(status__in=OPEN).exists():
        assert time.monotonic() < deadline, Counter(Message.objects.values_list("status", flat=True))
        if kills and len(sandbox.messages()) >= kills[0]:
            kills.pop(0)
            cluster.kill()
            cluster.start()
        dispatch_run()
        time.sleep(0.3)
    assert kills == [], "the run ended before every planned kill"


def assert_each_phone_got_exactly_one_message_or_a_final_failure(sandbox) -> None:
    received = Counter(m["phone"] for m in sandbox.messages())
    assert [phone for phone, n in received.items() if n > 1] == []
    for phone, status in Message.objects.values_list("contact__phone", "status"):
        if status == MessageStatus.SENT:
            assert received[phone] == 1, phone
        else:
            assert (status, received[phone]) == (MessageStatus.FAILED, 0), phone
    assert Message.objects.filter(status=MessageStatus.SENT).count() > 0.95 * 2 * PER_DEVICE


@pytest.mark.parametrize("kill_at", [(), (120, 300)], ids=["no-kill", "sigkill-twice"])
def test_500_messages_over_two_devices_with_faults_are_sent_exactly_once(faulty_sandbox, kill_at):
    two_devices_with_a_sending_campaign_each()
    cluster = SenderCluster(faulty_sandbox.url)
    cluster.start()
    try:
        run_until_settled(faulty_sandbox, cluster, kill_at=kill_at)
    finally:
        cluster.kill()
    assert_each_phone_got_exactly_one_message_or_a_final_failure(faulty_sandbox)
    assert Message.objects.filter(attempts__gt=3).count() == 0
    outcomes = Counter(MessageAttempt.objects.values_list("outcome", flat=True))
    assert all(outcomes[kind] > 0 for kind in ("transient", "rate_limited", "unknown")), outcomes
