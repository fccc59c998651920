"""Many devices, two sender loop processes: sends achieved over what the ideal schedule allows.

200 devices against the sandbox on loopback, pacing shrunk (gap 1 s, batches of 5, pause
5 s), one sending campaign per device, for 60 s, served by 2 `manage.py run_senders`
processes. The baseline is the limit: the sends each device's ideal schedule (the pacing
rules from the moment the campaigns start) allows in those 60 s. Goal: ratio >= 0.98.
Also measured: the lateness of each send against its slot (the moment pacing allowed it
after the device's previous send; the first against the start), its p99 (goal <= 1 s);
the peak RSS of the sender processes together (goal < 400 MB); duplicates in the
sandbox's record (0). The loops are stopped with SIGTERM at the end, as systemd does.

    python bench/many_devices.py [--devices 200] [--seconds 60] [--loops 2]
"""

import argparse
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness

SANDBOX_TOKEN = "bench-token"
PACING = {"gap_seconds": 1.0, "batch_size": 5, "batch_pause_seconds": 5.0}
POLL_SECONDS = 0.5


def main() -> None:
    options = _arguments()
    port = harness.free_port()
    env = {
        "WASSENGER_SANDBOX": "false",
        "WASSENGER_API_TOKEN": SANDBOX_TOKEN,
        "WASSENGER_API_URL": f"http://127.0.0.1:{port}/v1",
        "LOG_LEVEL": "WARNING",
        "DEBUG": "false",
        "SENDER_LOOP_POLL_SECONDS": str(POLL_SECONDS),
    }
    with harness.scratch_django("many_devices", **env):
        sandbox = harness.start(
            [sys.executable, "manage.py", "wassenger_sandbox", "--port", str(port)]
            + ["--token", SANDBOX_TOKEN, "--webhook-url", ""]
        )
        try:
            harness.wait_for_port(port)
            details = _run(port, options)
        finally:
            harness.stop(sandbox)
    harness.report(
        name="many_devices",
        unit="sends",
        value=details.pop("achieved"),
        baseline=details.pop("ideal"),
        goal=0.98,
        measured=f"sends in {options.seconds} s by {options.loops} sender loop processes serving "
        f"{options.devices} devices (gap 1 s, batches of 5, pause 5 s), one campaign each",
        baseline_is="the sends each device's ideal schedule allows in that time",
        also={
            f"p99 lateness {details['p99_lateness_s']} s <= 1 s": details["p99_lateness_s"] <= 1,
            f"peak RSS {details['peak_rss_mb']} MB < 400 MB": details["peak_rss_mb"] < 400,
            f"no duplicate send ({details['duplicates']})": details["duplicates"] == 0,
        },
        **details,
    )


def _arguments():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--loops", type=int, default=2)
    return parser.parse_args()


def _run(port: int, options) -> dict:
    from django.db import connection

    from config import clock
    from config.embedded_pg import url_for

    per_device = int(options.seconds) + 10  # more than a device can send in the time
    device_ids = _seed(options.devices, per_device)
    loops = [
        harness.start(
            [sys.executable, "manage.py", "run_senders"], DATABASE_URL=url_for(connection.settings_dict)
        )
        for _ in range(options.loops)
    ]
    rss = RssPeak(loops)
    try:
        time.sleep(3)  # the loops are up and know of each other before the clock starts
        start = _start_campaigns(device_ids)
        while clock.now() < start + timedelta(seconds=options.seconds):
            rss.sample()
            time.sleep(0.5)
        stop_seconds = _stop(loops)
    finally:
        for loop in loops:
            harness.stop(loop)
    end = start + timedelta(seconds=options.seconds)
    slots = _claims(start, end)
    lateness = sorted(_lateness(slots, start))
    return {
        "achieved": sum(len(s) for s in slots.values()),
        "ideal": options.devices * _ideal_sends(options.seconds),
        "devices": options.devices,
        "seconds": options.seconds,
        "loops": options.loops,
        "p99_lateness_s": round(lateness[int(len(lateness) * 0.99) - 1], 3) if lateness else None,
        "max_lateness_s": round(lateness[-1], 3) if lateness else None,
        "peak_rss_mb": round(rss.peak / 1024, 1),
        "stop_seconds": stop_seconds,
        "left_sending": _left_sending(),
        "duplicates": _duplicates(port),
    }


def _seed(devices: int, per_device: int) -> list[int]:
    from datetime import UTC, datetime

    from campaigns.models import Campaign, CampaignStatus, Contact
    from messaging.models import Device, Message

    Contact.objects.bulk_create(Contact(phone=f"+3365{n:07d}") for n in range(1, devices * per_device + 1))
    contacts = list(Contact.objects.order_by("id"))
    ids = []
    for index in range(devices):
        device = Device.objects.create(label=f"bench {index}", daily_limit=100_000, **PACING)
        campaign = Campaign.objects.create(
            name=f"bench {index}",
            message_1_text="Bonjour",
            message_2_text="Merci",
            status=CampaignStatus.PAUSED,  # until the clock starts
        )
        campaign.devices.set([device])
        Message.objects.bulk_create(
            Message(
                campaign=campaign,
                contact=c,
                device=device,
                kind="message_1",
                content="Bonjour",
                next_attempt_at=datetime(2000, 1, 1, tzinfo=UTC),
            )
            for c in contacts[index * per_device : (index + 1) * per_device]
        )
        ids.append(device.pk)
    return ids


def _start_campaigns(device_ids: list[int]):
    from campaigns.models import Campaign, CampaignStatus
    from config import clock

    start = clock.now()
    Campaign.objects.filter(devices__in=device_ids).update(status=CampaignStatus.SENDING)
    return start


def _stop(loops) -> float:
    """SIGTERM every loop, as systemd does; the seconds until the last one exited."""
    import signal

    started = time.monotonic()
    for loop in loops:
        loop.send_signal(signal.SIGTERM)
    for loop in loops:
        loop.wait(timeout=30)
    return round(time.monotonic() - started, 2)


def _claims(start, end) -> dict[int, list]:
    """Each device's accepted sends (their claim times, the pacing slots) within the run."""
    from messaging.models import AttemptOutcome, MessageAttempt

    rows = MessageAttempt.objects.filter(
        outcome=AttemptOutcome.ACCEPTED, started_at__gte=start, started_at__lte=end
    ).order_by("started_at")
    slots: dict[int, list] = {}
    for device_id, started_at in rows.values_list("message__device_id", "started_at"):
        slots.setdefault(device_id, []).append(started_at)
    return slots


def _lateness(slots: dict[int, list], start) -> list[float]:
    """Seconds each send came after the moment pacing allowed it."""
    gap, pause = timedelta(seconds=PACING["gap_seconds"]), timedelta(seconds=PACING["batch_pause_seconds"])
    late = []
    for times in slots.values():
        allowed = start
        for index, at in enumerate(times, start=1):
            late.append(max(0.0, (at - allowed).total_seconds()))
            allowed = at + (max(gap, pause) if index % PACING["batch_size"] == 0 else gap)
    return late


def _ideal_sends(seconds: float) -> int:
    """Sends one device's pacing allows from the start to `seconds` later, inclusive."""
    gap, pause, batch = PACING["gap_seconds"], PACING["batch_pause_seconds"], PACING["batch_size"]
    at, sent = 0.0, 0
    while at <= seconds:
        sent += 1
        at += max(gap, pause) if sent % batch == 0 else gap
    return sent


def _left_sending() -> int:
    from messaging.models import Message, MessageStatus

    return Message.objects.filter(status=MessageStatus.SENDING).count()


def _duplicates(port: int) -> int:
    import requests

    messages = requests.get(f"http://127.0.0.1:{port}/sandbox/messages", timeout=30).json()
    return sum(n - 1 for n in Counter(m["phone"] for m in messages).values() if n > 1)


class RssPeak:
    """The peak of the sender processes' resident memory, summed (kB, from /proc)."""

    def __init__(self, processes):
        self.processes, self.peak = processes, 0

    def sample(self) -> None:
        total = 0
        for process in self.processes:
            try:
                status = Path(f"/proc/{process.pid}/status").read_text()
            except OSError:
                continue
            total += next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
        self.peak = max(self.peak, total)


if __name__ == "__main__":
    main()
