"""Slowing down on trouble (issue 21): a device whose recent sends go bad is halted, with its
reason on the dashboard, until an operator resumes it. Real PostgreSQL, the test clock."""

from datetime import timedelta

import pytest
from django.urls import reverse

from messaging.models import AttemptOutcome, Device, MessageAttempt, MessageStatus
from messaging.trouble import RecentSends, Thresholds, devices_slow_down, trouble_reason
from monitoring.checks import health_check_run
from tests.factories import make_campaign, make_device, make_inbound, make_message

pytestmark = pytest.mark.django_db

THRESHOLDS = Thresholds(failure_rate=0.2, min_attempts=20, not_on_whatsapp=5, stop_rate=0.1)


def recent(**counts) -> RecentSends:
    return RecentSends(
        **{"sent": 0, "failed": 0, "not_on_whatsapp": 0, "message_1_sent": 0, "stops": 0, **counts}
    )


@pytest.mark.parametrize(
    ("counts", "trouble"),
    [
        ({"sent": 16, "failed": 4}, False),  # 20% is the limit, not over it
        ({"sent": 15, "failed": 5}, True),
        ({"sent": 5, "failed": 10}, False),  # too few attempts to judge
        ({"sent": 40, "not_on_whatsapp": 4}, False),
        ({"sent": 40, "not_on_whatsapp": 5}, True),
        ({"message_1_sent": 100, "stops": 10}, False),
        ({"message_1_sent": 100, "stops": 11}, True),
        ({"message_1_sent": 10, "stops": 9}, False),
    ],
)
def test_trouble_is_a_failure_rate_a_burst_of_unknown_numbers_or_many_stops(counts, trouble):
    assert (trouble_reason(recent(**counts), THRESHOLDS) is not None) is trouble


@pytest.fixture
def on_trouble(settings):
    settings.DEVICE_PAUSE_ON_TROUBLE = True
    settings.ALERT_FAILURE_RATE, settings.ALERT_FAILURE_MIN_ATTEMPTS = 0.2, 20
    settings.DEVICE_PAUSE_NOT_ON_WHATSAPP, settings.DEVICE_PAUSE_STOP_RATE = 5, 0.1


def sends(device, now, *, sent: int, failed: int = 0, not_on_whatsapp: int = 0):
    campaign = make_campaign(device=device)
    for _ in range(sent):
        make_message(campaign=campaign, status=MessageStatus.SENT, sent_at=now)
    for index in range(failed):
        message = make_message(campaign=campaign, status=MessageStatus.FAILED, failed_at=now)
        outcome = AttemptOutcome.INVALID_NUMBER if index < not_on_whatsapp else AttemptOutcome.REJECTED
        MessageAttempt.objects.create(message=message, number=1, started_at=now, outcome=outcome)
    return campaign


def test_a_device_failing_a_quarter_of_its_sends_is_halted_and_the_dashboard_says_why(
    on_trouble, fake_clock, admin_client
):
    device = make_device(label="Shaky")
    sends(device, fake_clock.now(), sent=15, failed=5)
    health_check_run()
    device.refresh_from_db()
    assert device.halted_at == fake_clock.now()
    assert (
        device.halted_reason
        == "trouble: 5 of its 20 recent sends failed: look at their errors, then resume the device"
    )
    page = admin_client.get(reverse("dashboard-live")).content.decode()
    assert "5 of its 20 recent sends failed" in page


def test_after_the_operator_resumes_only_new_sends_count(on_trouble, fake_clock, admin_client):
    device = make_device()
    sends(device, fake_clock.now(), sent=15, failed=5)
    devices_slow_down(fake_clock.now())
    fake_clock.advance(60)
    admin_client.post(
        reverse("admin:messaging_device_changelist"),
        {"action": "resume_sending", "_selected_action": [device.pk]},
    )
    fake_clock.advance(60)
    assert devices_slow_down(fake_clock.now()) == {}  # the old failures are forgiven
    sends(device, fake_clock.now(), sent=10, failed=10)
    assert list(devices_slow_down(fake_clock.now())) == [device.pk]


def test_a_burst_of_numbers_not_on_whatsapp_halts_the_device(on_trouble, fake_clock):
    device = make_device()
    sends(device, fake_clock.now(), sent=100, failed=5, not_on_whatsapp=5)
    assert "5 recent numbers are not on WhatsApp" in devices_slow_down(fake_clock.now())[device.pk]


def test_old_failures_outside_the_lookback_do_not_count(on_trouble, fake_clock):
    device = make_device()
    sends(device, fake_clock.now() - timedelta(hours=2), sent=10, failed=10)
    assert devices_slow_down(fake_clock.now()) == {}


def test_many_stop_replies_halt_the_device(on_trouble, fake_clock):
    device = make_device()
    campaign = sends(device, fake_clock.now() - timedelta(hours=3), sent=40)
    for message in campaign.messages.all()[:5]:
        make_inbound(message_1=message, text="STOP", outcome="opt_out")
    assert "5 of its 40 recent Message 1 were answered STOP" in devices_slow_down(fake_clock.now())[device.pk]


def test_a_session_coming_back_online_does_not_lift_a_halt_on_trouble(on_trouble, fake_clock):
    from messaging.devices import device_session_apply

    device = make_device()
    sends(device, fake_clock.now(), sent=15, failed=5)
    devices_slow_down(fake_clock.now())
    device_session_apply(device_id=device.pk, status="online")
    assert Device.objects.get(pk=device.pk).halted_at is not None


def test_halting_on_trouble_can_be_turned_off(fake_clock, settings):
    settings.DEVICE_PAUSE_ON_TROUBLE = False
    device = make_device()
    sends(device, fake_clock.now(), sent=0, failed=30)
    assert devices_slow_down(fake_clock.now()) == {}
