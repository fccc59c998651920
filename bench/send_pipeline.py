"""Messages per second through the real send pipeline vs. a plain loop of POSTs.

Pacing set to zero, the sandbox on loopback, 2,000 Message 1 over two devices, sent by a
real sender loop process, manage.py run_senders (claim, quota, send, record, per message).
The baseline is the limit: one requests.Session POSTing the same payloads to the same sandbox in a loop.
Goal: ratio >= 0.5.

    python bench/send_pipeline.py [--messages 2000] [--devices 2]
"""

import argparse
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness

SANDBOX_TOKEN = "bench-token"


def main() -> None:
    options = _arguments()
    port = harness.free_port()
    sandbox_env = {
        "WASSENGER_SANDBOX": "false",
        "WASSENGER_API_TOKEN": SANDBOX_TOKEN,
        "WASSENGER_API_URL": f"http://127.0.0.1:{port}/v1",
        "LOG_LEVEL": "WARNING",
    }
    with harness.scratch_django("send_pipeline", **sandbox_env):
        sandbox = harness.start(
            [
                sys.executable,
                "manage.py",
                "wassenger_sandbox",
                "--port",
                str(port),
                "--token",
                SANDBOX_TOKEN,
                "--webhook-url",
                "",
            ]
        )
        try:
            harness.wait_for_port(port)
            baseline = _plain_loop_rate(port, options.messages)
            _clear_sandbox(port)
            ours, details = _pipeline_rate(port, options.messages, options.devices)
        finally:
            harness.stop(sandbox)
    harness.report(
        name="send_pipeline",
        unit="messages/s",
        value=ours,
        baseline=baseline,
        goal=0.5,
        measured=f"messages/s through the sender loop, pacing off, {options.messages:,} messages, "
        f"{options.devices} devices",
        baseline_is="a bare loop of POSTs to the same sandbox",
        also={f"no duplicate send ({details['duplicates']})": details["duplicates"] == 0},
        messages=options.messages,
        devices=options.devices,
        **details,
    )


def _arguments():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--devices", type=int, default=2)
    return parser.parse_args()


def _plain_loop_rate(port: int, count: int) -> float:
    import requests

    session = requests.Session()
    session.headers["Token"] = SANDBOX_TOKEN
    started = time.perf_counter()
    for n in range(count):
        body = {
            "phone": f"+3363{n:07d}",
            "reference": uuid.uuid4().hex,
            "message": "Bonjour",
            "priority": "normal",
        }
        session.post(f"http://127.0.0.1:{port}/v1/messages", json=body, timeout=10).raise_for_status()
    return count / (time.perf_counter() - started)


def _clear_sandbox(port: int) -> None:
    import requests

    requests.delete(f"http://127.0.0.1:{port}/sandbox/messages", timeout=10).raise_for_status()


def _pipeline_rate(port: int, count: int, devices: int) -> tuple[float, dict]:
    from django.db import connection

    from config.embedded_pg import url_for
    from messaging.models import Message, MessageStatus

    device_ids = _seed(count, devices)
    # One loop process per device, as many processes as the senders' cluster had workers.
    loops = [
        harness.start(
            [sys.executable, "manage.py", "run_senders", "--threads", "1"],
            SENDER_LOOP_POLL_SECONDS="0.05",
            DATABASE_URL=url_for(connection.settings_dict),
        )
        for _ in range(devices)
    ]
    try:
        time.sleep(2)  # let the sender loop come up before the clock starts
        started = time.perf_counter()
        _start_senders(device_ids)
        while Message.objects.filter(status=MessageStatus.SENT).count() < count:
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
    finally:
        for loop in loops:
            harness.stop(loop)
    return count / elapsed, {"seconds": round(elapsed, 2), "duplicates": _duplicates(port)}


def _seed(count: int, devices: int) -> list[int]:
    from campaigns.models import Campaign, CampaignStatus, Contact
    from messaging.models import Device, Message

    Contact.objects.bulk_create(Contact(phone=f"+3364{n:07d}") for n in range(1, count + 1))
    contacts = list(Contact.objects.order_by("id"))
    ids = []
    for index in range(devices):
        device = Device.objects.create(
            label=f"bench {index}",
            gap_seconds=0,
            batch_size=count,
            batch_pause_seconds=0,
            daily_limit=10 * count,
        )
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
            for c in contacts[index::devices]
        )
        ids.append(device.pk)
    return ids


def _start_senders(device_ids: list[int]) -> None:
    """The campaigns start sending: the sender loop finds their devices at its next look."""
    from campaigns.models import Campaign, CampaignStatus

    Campaign.objects.filter(devices__in=device_ids).update(status=CampaignStatus.SENDING)


def _duplicates(port: int) -> int:
    import requests

    phones = [
        m["phone"] for m in requests.get(f"http://127.0.0.1:{port}/sandbox/messages", timeout=10).json()
    ]
    return len(phones) - len(set(phones))


if __name__ == "__main__":
    main()
