"""The sender loop (messaging/loop.py): many devices, one loop or several, stops and deaths.

Pacing is checked on a simulated clock with hypothesis (the loop in one thread, sleeps move
the clock); leases between loops with two real loops in threads of this process (Wassenger
faked at HTTP) and with real `manage.py run_senders` processes against the sandbox.
"""

import threading
import time
from collections import Counter, defaultdict
from datetime import timedelta
from itertools import pairwise

import pytest
import responses
from django.db import connection, transaction
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from campaigns.models import Contact
from messaging import pacing
from messaging.claims import device_policy
from messaging.dispatch import dispatch_run
from messaging.loop import SenderLoop
from messaging.models import Device, Message, MessageAttempt, MessageStatus
from messaging.models import SenderLoop as Presence
from tests import fake_wassenger
from tests.clusters import qcluster_kill, qcluster_start, settings_shrink
from tests.factories import make_device, make_sending_campaign, queue_message_1
from tests.messaging.conftest import SANDBOX_TOKEN, start_sandbox, wait_for

device_pacing = st.fixed_dictionaries(
    {
        "gap_seconds": st.integers(min_value=0, max_value=40),
        "batch_size": st.integers(min_value=1, max_value=6),
        "batch_pause_seconds": st.integers(min_value=0, max_value=200),
        "messages": st.integers(min_value=0, max_value=9),
    }
)


def devices_with_campaigns(specs: list[dict], prefix: str = "35") -> list[Device]:
    devices = []
    for index, spec in enumerate(specs):
        fields = {k: v for k, v in spec.items() if k != "messages"}
        device = make_device(**fields)
        contacts = Contact.objects.bulk_create(
            Contact(phone=f"+33{prefix}{index:03d}{n:04d}") for n in range(1, spec["messages"] + 1)
        )
        queue_message_1(campaign=make_sending_campaign(device=device), contacts=contacts)
        devices.append(device)
    return devices


def claims_by_device() -> dict[int, list]:
    """Each device's claim times (its pacing slots), in order."""
    slots = defaultdict(list)
    rows = MessageAttempt.objects.order_by("started_at").values_list("message__device_id", "started_at")
    for device_id, started_at in rows:
        slots[device_id].append(started_at)
    return slots


def pacing_broken(slots: list, device: Device) -> list[str]:
    policy, problems = device_policy(device), []
    for index, (before, after) in enumerate(pairwise(slots), start=1):
        gap = (after - before).total_seconds()
        if gap < policy.gap_seconds - 1e-6:
            problems.append(f"send {index + 1} {gap}s after the previous one")
        if index % policy.batch_size == 0 and gap < policy.batch_pause_seconds - 1e-6:
            problems.append(f"send {index + 1} opens a batch {gap}s after the last one")
    return problems


@pytest.mark.django_db
@given(specs=st.lists(device_pacing, min_size=2, max_size=7))
@hypothesis_settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_one_loop_keeps_each_devices_pacing_and_its_ideal_schedule_whatever_the_devices(
    fake_clock, settings, specs
):
    """Many devices, one loop: every message once, no pacing rule broken for any device, and
    each device finishes exactly when its own ideal schedule does (no device waits for another)."""
    settings.SENDER_LOOP_POLL_SECONDS = 30
    with transaction.atomic(), responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        api = fake_wassenger.install(mock)
        devices = devices_with_campaigns(specs)
        start = fake_clock.now()
        SenderLoop(threads=0).run(until_idle=True)
        slots = claims_by_device()
        assert sorted(api.phones()) == sorted(Message.objects.values_list("contact__phone", flat=True))
        for device, spec in zip(devices, specs, strict=True):
            assert len(slots[device.pk]) == spec["messages"]
            assert pacing_broken(slots[device.pk], device) == []
            if spec["messages"]:
                ideal = pacing.pacing_estimate_finish(
                    policy=device_policy(device),
                    state=pacing.DeviceState(),
                    now=start,
                    message_1=spec["messages"],
                )
                assert slots[device.pk][-1] == ideal
        assert not Device.objects.exclude(lease_owner="").exists()  # every lease released
        transaction.set_rollback(True)


def statements_of_a_loop_serving(waiting_devices: int, prefix: str) -> tuple[int, int]:
    """(statements, sends) of a loop serving devices that wait 1000 s between two sends."""
    slow = {"gap_seconds": 1000, "batch_size": 100, "batch_pause_seconds": 0, "messages": 2}
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        api = fake_wassenger.install(mock)
        devices_with_campaigns([slow] * waiting_devices, prefix=prefix)
        statements = []
        with connection.execute_wrapper(lambda execute, *args: statements.append(1) or execute(*args)):
            SenderLoop(threads=0).run(until_idle=True)
    return len(statements), len(api.accepted)


@pytest.mark.django_db
def test_a_waiting_device_costs_the_loop_nothing_while_it_waits(fake_clock, settings):
    settings.SENDER_LOOP_POLL_SECONDS = 30
    one, sends_of_one = statements_of_a_loop_serving(1, prefix="37")
    fake_clock.advance(3600)
    twenty, sends_of_twenty = statements_of_a_loop_serving(20, prefix="38")
    assert (sends_of_one, sends_of_twenty) == (2, 40)
    # Nineteen more devices, each waiting 1000 s: only their own sends cost (a few statements
    # each, and one read of each campaign's attachments: campaigns/media.py caches it), not
    # their waits; the loop's upkeep (polls, lease renewals) is shared by all.
    assert twenty - one <= 38 * 5 + 19, (one, twenty)


# --- Several loops ------------------------------------------------------------------------------

FAST_PACING = {"gap_seconds": 0.05, "batch_size": 5, "batch_pause_seconds": 0.3}


def run_in_thread(loop: SenderLoop) -> threading.Thread:
    def serve():
        try:
            loop.run()
        finally:
            connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def owners() -> Counter:
    return Counter(Device.objects.exclude(lease_owner="").values_list("lease_owner", flat=True))


@pytest.mark.django_db(transaction=True)
def test_two_loops_share_20_devices_send_nothing_twice_and_hand_over_when_one_stops(settings):
    settings.SENDER_LEASE_SECONDS, settings.SENDER_LOOP_POLL_SECONDS = 1.0, 0.1
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        api = fake_wassenger.install(mock)
        devices = devices_with_campaigns([{**FAST_PACING, "messages": 30}] * 20)
        first, second = SenderLoop(threads=4), SenderLoop(threads=4)
        threads = [run_in_thread(first), run_in_thread(second)]
        try:
            # Both loops come to hold their share of the devices.
            wait_for(lambda: sorted(owners().values()) in ([10, 10], [9, 11]), timeout=20, interval=0.05)
            wait_for(lambda: len(api.accepted) >= 200, timeout=60, interval=0.05)
            first.stop()  # it finishes its sends in flight and hands its devices over
            threads[0].join(timeout=10)
            assert set(owners()) <= {second.owner}
            wait_for(lambda: not Message.objects.exclude(status=MessageStatus.SENT).exists(), timeout=90)
        finally:
            second.stop()
            for thread in threads:
                thread.join(timeout=10)
    assert len(api.accepted) == 600 == len(set(api.phones()))
    slots = claims_by_device()
    lease = timedelta(seconds=settings.SENDER_LEASE_SECONDS)
    step = timedelta(seconds=FAST_PACING["batch_pause_seconds"])
    for device in devices:
        assert pacing_broken(slots[device.pk], device) == []
        # Never unserved longer than a lease beyond what pacing asks (here: the pause).
        longest = max(after - before for before, after in pairwise(slots[device.pk]))
        assert longest <= step + lease, (device, longest)
    assert not Presence.objects.exists() and not owners()


@pytest.fixture
def sandbox(settings):
    server = start_sandbox("--webhook-url", "", "--seed", "4")
    settings.WASSENGER_API_URL, settings.WASSENGER_API_TOKEN = f"{server.url}/v1", SANDBOX_TOKEN
    yield server
    server.stop()


@pytest.mark.django_db(transaction=True)
def test_a_loop_killed_with_sigkill_loses_its_devices_to_the_other_within_a_lease(sandbox, settings):
    env = settings_shrink(settings, SENDER_LOOP_THREADS="4")
    devices = devices_with_campaigns([{**FAST_PACING, "gap_seconds": 0.2, "messages": 40}] * 6, prefix="36")
    loops = [qcluster_start(name="senders", sandbox_url=sandbox.url, **env) for _ in range(2)]
    try:
        wait_for(lambda: len(owners()) == 2, timeout=30, interval=0.05)
        doomed_owner = next(iter(owners()))
        doomed = {d for d, o in Device.objects.values_list("pk", "lease_owner") if o == doomed_owner}
        presence = Presence.objects.get(owner=doomed_owner)
        doomed_loop = next(p for p in loops if p.pid == presence.pid)
        qcluster_kill(doomed_loop)
        killed_at = time.monotonic()
        survivor = next(o for o in owners() if o != doomed_owner)

        def taken_over() -> bool:
            dispatch_run()  # the one-minute job settles the sends the dead loop cut short
            held = dict(Device.objects.filter(pk__in=doomed).values_list("pk", "lease_owner"))
            return all(owner == survivor for owner in held.values())

        wait_for(taken_over, timeout=15, interval=0.1)
        assert time.monotonic() - killed_at <= settings.SENDER_LEASE_SECONDS + 1.5
        deadline = time.monotonic() + 120
        while Message.objects.exclude(status=MessageStatus.SENT).exists():
            assert time.monotonic() < deadline, Counter(Message.objects.values_list("status", flat=True))
            dispatch_run()
            time.sleep(0.3)
    finally:
        for process in loops:
            qcluster_kill(process)
    sent = Counter(m["phone"] for m in sandbox.messages())
    assert sent == dict.fromkeys(Message.objects.values_list("contact__phone", flat=True), 1)
    assert len(devices) == 6


@pytest.mark.django_db(transaction=True)
def test_a_wake_up_sends_a_new_message_at_once_not_at_the_next_poll(settings):
    from messaging.dispatch import senders_wake

    settings.SENDER_LOOP_POLL_SECONDS = 30  # only the wake-up can find the device in time
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        api = fake_wassenger.install(mock)
        (device,) = devices_with_campaigns([{**FAST_PACING, "messages": 0}], prefix="41")
        loop = SenderLoop(threads=2)
        thread = run_in_thread(loop)
        try:
            time.sleep(0.5)  # the loop looked once and found nothing
            (campaign,) = device.campaigns.all()
            queue_message_1(campaign=campaign, contacts=[Contact.objects.create(phone="+33641000001")])
            woken = time.monotonic()
            senders_wake(device.pk)
            wait_for(lambda: len(api.accepted) == 1, timeout=5, interval=0.01)
            assert time.monotonic() - woken < 2
        finally:
            loop.stop()
            thread.join(timeout=10)


@pytest.mark.django_db(transaction=True)
def test_a_reply_to_a_device_parked_at_its_limit_gets_its_message_2_at_once(settings):
    """Message 1's quota is spent, so the loop let the device go until its next day; a reply
    wakes it, and its Message 2 goes out from the reserve now, not tomorrow."""
    from messaging.dispatch import senders_wake
    from messaging.models import MessageKind

    settings.SENDER_LOOP_POLL_SECONDS, settings.MESSAGE_2_RESERVE_SHARE = 0.2, 0.1
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        api = fake_wassenger.install(mock)
        (device,) = devices_with_campaigns([{**FAST_PACING, "daily_limit": 10, "messages": 12}], prefix="42")
        loop = SenderLoop(threads=2)
        thread = run_in_thread(loop)
        try:
            wait_for(lambda: len(api.accepted) == 9, timeout=10, interval=0.01)  # 10 less the reserve
            wait_for(lambda: device.pk in loop.parked, timeout=5, interval=0.01)
            answered = Message.objects.filter(status=MessageStatus.SENT).first()
            Message.objects.filter(pk=answered.pk).update(replied_at=answered.sent_at)
            Message.objects.create(
                campaign_id=answered.campaign_id,
                contact_id=answered.contact_id,
                device=device,
                kind=MessageKind.MESSAGE_2,
                content="Merci",
            )
            woken = time.monotonic()
            senders_wake(device.pk)
            wait_for(lambda: len(api.accepted) == 10, timeout=5, interval=0.01)
            assert time.monotonic() - woken < 2
        finally:
            loop.stop()
            thread.join(timeout=10)
