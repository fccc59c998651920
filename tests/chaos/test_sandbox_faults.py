"""Scenario 3: every fault of the sandbox at once, against a real sender loop.

500s (with nothing queued, and after the message was queued), 429s with and without
Retry-After, answers slower than the read timeout, and connections dropped after or before
the sandbox took the message. The sandbox's log of send requests is the outside world's
witness. Attempts are spent only on answers about the message (a 500 Wassenger did not
queue): at most 3 of those, each after the lookup and the retry formula's wait (60 ×
2^(n-1), shrunk); a 429, a timeout or a dropped connection is the device's link failing,
which costs no attempt and makes the whole device wait (its breaker, a 429 at least its
Retry-After). An answer lost after acceptance, or a 500 (issue 18: no proof nothing was
queued), is reconciled by reference before any new send and never sent again; every
message ends sent once, or failed after its third 500.
"""

from collections import Counter, defaultdict
from itertools import pairwise

import pytest
from django.conf import settings as django_settings

from messaging.models import Message, MessageAttempt, MessageStatus
from messaging.retries import retry_delay
from tests.chaos.conftest import accepted_by_phone, assert_counters_match_accepted_sends
from tests.clusters import SenderCluster, run_until_settled, settings_shrink
from tests.factories import make_device, make_sending_campaign, queue_message_1
from tests.messaging.conftest import SANDBOX_TOKEN, start_sandbox

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

PER_DEVICE = 150
RETRY_AFTER = 0.5  # longer than the shrunk 0.2 s minimum wait, so that it shows
FAULTS = {
    "--fail-500": 0.1,
    "--fail-500-accepted": 0.03,
    "--fail-429": 0.08,
    "--retry-after-share": 0.5,
    "--retry-after-seconds": RETRY_AFTER,
    "--slow": 0.03,
    "--slow-seconds": 1.5,
    "--drop-after-read": 0.03,
    "--drop-before-accept": 0.03,
}
READ_TIMEOUT = "1"
ACCEPTED_FAULTS = (None, "slow", "drop_after_read", "error_500_accepted")  # the sandbox took the message


@pytest.fixture
def faulty_sandbox(settings):
    flags = [str(part) for flag, share in FAULTS.items() for part in (flag, share)]
    server = start_sandbox("--webhook-url", "", "--seed", "5", *flags)
    settings.WASSENGER_API_URL, settings.WASSENGER_API_TOKEN = f"{server.url}/v1", SANDBOX_TOKEN
    yield server
    server.stop()


def two_devices_with_a_sending_campaign_each() -> None:
    from campaigns.models import Contact

    Contact.objects.bulk_create(Contact(phone=f"+3362{n:07d}") for n in range(1, 2 * PER_DEVICE + 1))
    contacts = list(Contact.objects.order_by("id"))
    for index in range(2):
        device = make_device(gap_seconds=0.02, batch_size=25, batch_pause_seconds=0.2)
        campaign = make_sending_campaign(device=device, name=f"Faults {index}")
        queue_message_1(campaign=campaign, contacts=contacts[index * PER_DEVICE : (index + 1) * PER_DEVICE])


# No HTTP answer, or a 429: the device's link failed (its breaker), not the message.
LINK_FAULTS = ("rate_limit_429", "slow", "drop_after_read", "drop_before_accept")


def wait_after(request: dict, attempts_spent: int) -> float:
    """The shortest wait the policy allows between this request and the message's next one."""
    if request["fault"] == "rate_limit_429":
        return max(django_settings.RATE_LIMIT_MIN_WAIT_SECONDS, request["retry_after"] or 0)
    assert request["fault"] in ("drop_before_accept", "error_500"), f"{request} was accepted, yet sent again"
    if request["fault"] == "drop_before_accept":  # the device waits; the message keeps its place
        return django_settings.DEVICE_BREAKER_BASE_SECONDS
    # Looked up first, not found, then the formula's delay (issue 18: a 500 is looked up too).
    return django_settings.RECONCILE_AFTER_SECONDS + retry_delay(attempts_spent).total_seconds()


def requests_by_message(sandbox) -> dict[str, list[dict]]:
    by_reference = defaultdict(list)
    for request in sorted(sandbox.control("GET", "sends"), key=lambda r: r["at"]):
        by_reference[request["reference"]].append(request)
    return by_reference


def assert_device_waits_after_each_link_failure(sends: dict[str, list[dict]], device_of: dict) -> None:
    """After a 429, a timeout or a dropped connection the whole device waits (its breaker, a
    429 at least its Retry-After): none of its messages is tried meanwhile."""
    by_device = defaultdict(list)
    for reference, requests in sends.items():
        by_device[device_of[reference]] += requests
    for requests in by_device.values():
        requests.sort(key=lambda r: r["at"])
        for failed, following in pairwise(requests):
            if failed["fault"] in LINK_FAULTS:
                wait = django_settings.DEVICE_BREAKER_BASE_SECONDS
                if failed["fault"] == "rate_limit_429":
                    wait = max(wait, django_settings.RATE_LIMIT_MIN_WAIT_SECONDS, failed["retry_after"] or 0)
                # The sandbox stamps a slow answer when it took the request, the client gives up later.
                assert following["at"] - failed["at"] >= wait, (failed, following)


def test_all_sandbox_faults_at_once_end_in_the_right_states_within_the_retry_policy(faulty_sandbox, settings):
    env = settings_shrink(settings, WASSENGER_READ_TIMEOUT=READ_TIMEOUT)
    two_devices_with_a_sending_campaign_each()
    cluster = SenderCluster(faulty_sandbox.url, **env)
    cluster.start()
    try:
        run_until_settled(faulty_sandbox, cluster)
    finally:
        cluster.kill()

    sends = requests_by_message(faulty_sandbox)
    messages = {str(m.reference): m for m in Message.objects.select_related("contact")}
    assert set(sends) == set(messages)
    faults = {r["fault"] for requests in sends.values() for r in requests}
    assert faults == {
        *(None, "error_500", "error_500_accepted", "rate_limit_429"),
        *("slow", "drop_after_read", "drop_before_accept"),
    }
    retry_afters = {r["retry_after"] for rs in sends.values() for r in rs if r["fault"] == "rate_limit_429"}
    assert retry_afters == {None, RETRY_AFTER}

    received = accepted_by_phone(faulty_sandbox)
    # Every request is an attempt on the message's admin page, and the other way round.
    logged = Counter(str(r) for r in MessageAttempt.objects.values_list("message__reference", flat=True))
    for reference, requests in sends.items():
        message = messages[reference]
        spent = [r for r in requests if r["fault"] == "error_500"]
        accepted = requests[-1]["fault"] in ACCEPTED_FAULTS
        assert logged[reference] == len(requests), (message, requests)
        assert message.attempts == len(spent) + accepted <= 3, (message, requests)
        for request, following in pairwise(requests):
            spent_so_far = sum(r["fault"] == "error_500" for r in requests[: requests.index(request) + 1])
            assert following["at"] - request["at"] >= wait_after(request, spent_so_far), (request, following)
        if accepted:
            assert (message.status, received[message.contact.phone]) == (MessageStatus.SENT, 1)
        else:  # three 500s Wassenger did not queue: failed, and never sent
            assert (message.status, len(spent)) == (MessageStatus.FAILED, 3), requests
            assert received[message.contact.phone] == 0
    assert_device_waits_after_each_link_failure(sends, {ref: m.device_id for ref, m in messages.items()})
    assert_counters_match_accepted_sends()
