"""The sender keeps to each device's send window, its jitter and its warm-up (issue 21).

Real claims and outcomes on PostgreSQL, Wassenger faked at the HTTP boundary, the test clock.
"""

from datetime import UTC, date, datetime, timedelta

import pytest
import responses

from messaging.models import Message, MessageKind, MessageStatus
from messaging.sending import sender_run
from tests import fake_wassenger
from tests.factories import make_device
from tests.messaging.test_send_engine import sending_campaign

pytestmark = pytest.mark.django_db


@pytest.fixture
def api():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield fake_wassenger.install(mock)


def daytime_device(**fields):
    fields = {"send_window": "mon-sun 09:00-20:00", "time_zone": "Europe/Paris", **fields}
    return make_device(gap_seconds=25, batch_size=25, batch_pause_seconds=300, daily_limit=1000, **fields)


def sent_times(campaign, kind=MessageKind.MESSAGE_1) -> list[datetime]:
    sent = Message.objects.filter(campaign=campaign, kind=kind, status=MessageStatus.SENT)
    return sorted(sent.values_list("sent_at", flat=True))


def test_message_1_stops_at_the_window_close_and_resumes_at_the_next_opening(fake_clock, api):
    # 19:59:10 in Paris (summer time): two sends fit before 20:00, the rest waits for 09:00.
    fake_clock.current = datetime(2026, 6, 1, 17, 59, 10, tzinfo=UTC)
    device = daytime_device()
    campaign = sending_campaign(device, contacts=5)
    sender_run(device_id=device.pk)
    times = sent_times(campaign)
    assert times[:2] == [
        datetime(2026, 6, 1, 17, 59, 10, tzinfo=UTC),
        datetime(2026, 6, 1, 17, 59, 35, tzinfo=UTC),
    ]
    assert times[2] == datetime(2026, 6, 2, 7, 0, tzinfo=UTC)  # 09:00 in Paris
    assert len(times) == 5


def test_a_reply_at_night_gets_its_message_2_within_the_hour_and_an_old_one_waits(fake_clock, api):
    fake_clock.current = datetime(2026, 6, 1, 20, 0, tzinfo=UTC)  # 22:00 in Paris
    device = daytime_device()
    campaign = sending_campaign(device, contacts=2)
    fresh, old = Message.objects.filter(campaign=campaign).order_by("pk")
    now = fake_clock.now()
    for message, wrote in ((fresh, now - timedelta(minutes=10)), (old, now - timedelta(hours=2))):
        Message.objects.filter(pk=message.pk).update(
            status=MessageStatus.SENT, sent_at=wrote - timedelta(minutes=5), replied_at=wrote
        )
        Message.objects.create(
            campaign=campaign,
            contact_id=message.contact_id,
            device=device,
            kind=MessageKind.MESSAGE_2,
            content="Merci",
            next_attempt_at=now,
        )
    sender_run(device_id=device.pk)
    answered = Message.objects.filter(campaign=campaign, kind=MessageKind.MESSAGE_2)
    sent_at = dict(answered.values_list("contact_id", "sent_at"))
    assert sent_at[fresh.contact_id] == now
    assert sent_at[old.contact_id] == datetime(2026, 6, 2, 7, 0, tzinfo=UTC)


def test_jitter_spreads_the_gaps_and_the_sender_keeps_its_draw(fake_clock, api, settings):
    settings.DEVICE_GAP_JITTER, settings.DEVICE_BATCH_JITTER = 0.4, 0.2
    device = make_device(send_window="always", gap_seconds=25, batch_size=25, batch_pause_seconds=300)
    campaign = sending_campaign(device, contacts=30)
    sender_run(device_id=device.pk)
    times = sent_times(campaign)
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)]
    within = [g for g in gaps if g < 300]
    assert all(25 <= g <= 35 for g in within) and len({round(g) for g in within}) > 3
    assert 20 <= gaps.index(max(gaps)) + 1 <= 25  # the first batch's size was drawn
    device.refresh_from_db()
    assert 25 <= device.next_gap_seconds <= 35 and 20 <= device.batch_target <= 25


def test_a_new_number_sends_its_warm_up_limit_on_its_first_day(fake_clock, api, settings):
    settings.DEVICE_WARMUP = "0-3:50,4-7:100"
    device = make_device(send_window="always", gap_seconds=0, batch_size=1000, batch_pause_seconds=0)
    assert device.number_since == fake_clock.now().date()
    campaign = sending_campaign(device, contacts=60)
    sender_run(device_id=device.pk)
    assert len(sent_times(campaign)) == 45  # 50 less the reserve for Message 2
    device.number_since = date(2020, 1, 1)
    device.save(update_fields=["number_since"])
    sender_run(device_id=device.pk)
    assert len(sent_times(campaign)) == 60


def test_the_admin_edits_the_window_and_refuses_an_unreadable_one(admin_client):
    device = daytime_device()
    url = f"/admin/messaging/device/{device.pk}/change/"
    form = admin_client.get(url).context["adminform"].form
    data = {name: form[name].value() for name in form.fields if form[name].value() is not None}
    data |= {"is_default": "", "_save": "Save"}
    refused = admin_client.post(url, data | {"send_window": "mon 20:00-09:00"})
    assert refused.status_code == 200
    assert "ends before it starts" in str(refused.context["adminform"].form.errors["send_window"])
    assert admin_client.post(url, data | {"send_window": "mon-fri 08:00-18:00"}).status_code == 302
    device.refresh_from_db()
    assert device.send_window == "mon-fri 08:00-18:00"
