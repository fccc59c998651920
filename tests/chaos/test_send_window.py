"""Scenario: the send window closes in the middle of a campaign (issue 21).

A real `manage.py run_senders` on the sandbox and real PostgreSQL, on the wall clock: the
device's window (in UTC) closes at the next minute and opens again a minute later. No Message 1
is claimed while it is closed, sending stops at the edge and resumes at the next opening, and
every contact gets Message 1 once.
"""

import math
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from messaging.models import Message, MessageStatus
from tests.chaos.conftest import accepted_by_phone
from tests.clusters import SenderCluster, settings_shrink
from tests.messaging.conftest import SANDBOX_TOKEN, start_sandbox, wait_for
from tests.messaging.test_send_engine_loop import claims_by_device, devices_with_campaigns

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

GAP = 0.25
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@pytest.fixture
def sandbox(settings):
    server = start_sandbox("--webhook-url", "", "--seed", "21")
    settings.WASSENGER_API_URL, settings.WASSENGER_API_TOKEN = f"{server.url}/v1", SANDBOX_TOKEN
    yield server
    server.stop()


def closing_minute() -> datetime:
    """The next minute boundary at least 15 s away: when the window will close."""
    now = datetime.now(UTC)
    edge = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    return edge + timedelta(minutes=1) if (edge - now).total_seconds() < 15 else edge


def test_a_window_closing_mid_campaign_stops_message_1_at_the_edge_and_resumes_at_the_opening(
    sandbox, settings
):
    closes = closing_minute()
    opens = closes + timedelta(minutes=1)
    # The window is written within one day of the device's zone: near midnight UTC, a zone
    # twelve hours ahead puts both edges at midday (a window is wall time in its zone).
    zone = "UTC" if 1 <= closes.hour <= 22 else "Etc/GMT-12"
    local_closes, local_opens = (moment.astimezone(ZoneInfo(zone)) for moment in (closes, opens))
    day = WEEKDAYS[local_closes.weekday()]
    window = f"{day} 00:00-{local_closes:%H:%M}; {day} {local_opens:%H:%M}-24:00"
    # Enough Message 1 to still be sending when the window closes, and some 10 s more.
    messages = math.ceil(((closes - datetime.now(UTC)).total_seconds() + 10) / GAP)
    pacing = {"gap_seconds": GAP, "batch_size": 1000, "batch_pause_seconds": 0, "daily_limit": 100_000}
    (device,) = devices_with_campaigns(
        [{**pacing, "send_window": window, "time_zone": zone, "messages": messages}], prefix="41"
    )
    loop = SenderCluster(sandbox.url, **settings_shrink(settings))
    loop.start()
    try:
        done = Message.objects.filter(status=MessageStatus.SENT)
        wait_for(lambda: done.count() == messages, timeout=(opens - datetime.now(UTC)).total_seconds() + 90)
    finally:
        loop.stop()
    claims = claims_by_device()[device.pk]
    before, after = [c for c in claims if c < closes], [c for c in claims if c >= closes]
    assert before and after
    assert all(claim >= opens for claim in after)  # nothing while the window was closed
    assert closes - before[-1] < timedelta(seconds=2)  # sending went on up to the edge
    assert after[0] - opens < timedelta(seconds=2)  # and resumed at the opening
    phones = Message.objects.values_list("contact__phone", flat=True)
    assert accepted_by_phone(sandbox) == dict.fromkeys(phones, 1)
