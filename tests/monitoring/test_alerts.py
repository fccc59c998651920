"""Alert levels, incidents emailed once, the daily report at the UTC midnight boundary."""

from datetime import UTC, datetime, timedelta

import pytest
import responses
from django.core import mail
from hypothesis import given
from hypothesis import strategies as st

from campaigns.models import Contact
from messaging.models import Device, DeviceDay, MessageStatus
from monitoring import checks
from monitoring.checks import daily_rollover_run, health_check_run
from monitoring.figures import LEVEL_ORDER, AlertLevel, alert_level, daily_figures
from monitoring.models import DailyReport, Incident
from tests.factories import make_campaign, make_contact, make_device, make_message


@pytest.mark.parametrize(
    ("sends", "level"),
    [
        (0, "ok"),
        (750, "ok"),
        (751, "attention"),
        (900, "attention"),
        (901, "danger"),
        (1000, "danger"),
        (1001, "blocked"),
    ],
)
def test_the_legacy_boundaries_for_the_default_limit(sends, level):
    assert alert_level(sends=sends, limit=1000) == level


@given(limit=st.integers(1, 5000), sends=st.integers(0, 6000), more=st.integers(0, 100))
def test_the_level_follows_the_share_of_the_limit_and_never_falls_as_sends_grow(limit, sends, more):
    level = alert_level(sends=sends, limit=limit)
    assert LEVEL_ORDER.index(alert_level(sends=sends + more, limit=limit)) >= LEVEL_ORDER.index(level)
    assert (level == AlertLevel.OK) == (sends <= 0.75 * limit)
    assert (level == AlertLevel.BLOCKED) == (sends > limit)


@pytest.fixture
def admins(settings):
    settings.ADMINS = [("Ops", "ops@example.com")]
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


@pytest.fixture
def wassenger_up(settings):
    with responses.RequestsMock() as mock:
        mock.get(f"{settings.WASSENGER_API_URL}/devices", json=[{"id": "x", "status": "operative"}])
        yield


@pytest.mark.django_db
@pytest.mark.usefixtures("other_workers_alive")
def test_a_halted_device_lasting_an_hour_sends_one_email_and_one_when_it_ends(
    fake_clock, admins, wassenger_up
):
    device = make_device(label="Paris")
    Device.objects.filter(pk=device.pk).update(halted_at=fake_clock.now(), halted_reason="AuthError HTTP 401")
    for _ in range(30):  # an hour of checks every 2 minutes
        health_check_run()
        fake_clock.advance(120)
    assert [m.subject for m in mail.outbox] == ["[Relance] Device Paris halted: AuthError HTTP 401"]
    Device.objects.filter(pk=device.pk).update(halted_at=None)
    health_check_run()
    health_check_run()
    assert len(mail.outbox) == 2 and mail.outbox[1].subject.startswith("[Relance] Resolved: Device Paris")


@pytest.mark.django_db
@pytest.mark.usefixtures("other_workers_alive")
def test_each_quota_level_is_announced_once_as_it_is_reached(fake_clock, admins, wassenger_up):
    device = make_device(label="Lyon", daily_limit=1000)
    day = DeviceDay.objects.create(device=device, day=fake_clock.now().date(), message_1_count=751)
    health_check_run()
    health_check_run()
    DeviceDay.objects.filter(pk=day.pk).update(message_1_count=950)
    health_check_run()
    subjects = [m.subject for m in mail.outbox]
    assert subjects == [
        "[Relance] Device Lyon: 751/1000 sends today, level attention",
        "[Relance] Device Lyon: 950/1000 sends today, level danger",
    ]
    DeviceDay.objects.filter(pk=day.pk).update(message_1_count=1000)
    health_check_run()
    assert mail.outbox[-1].subject == (
        "[Relance] Device Lyon: daily limit reached (1000/1000), sending waits for 00:00 UTC"
    )


@pytest.mark.django_db
@pytest.mark.usefixtures("other_workers_alive")
def test_a_failure_rate_over_the_setting_raises_one_alert(fake_clock, admins, wassenger_up, settings):
    settings.ALERT_FAILURE_MIN_ATTEMPTS = 4
    device = make_device(label="Nice")
    now = fake_clock.now()
    for status in (MessageStatus.FAILED, MessageStatus.FAILED, MessageStatus.SENT, MessageStatus.SENT):
        stamps = {"failed_at": now} if status == MessageStatus.FAILED else {"sent_at": now}
        make_message(device=device, status=status, **stamps)
    health_check_run()
    health_check_run()
    assert [m.subject for m in mail.outbox] == ["[Relance] Device Nice: 2 of 4 messages failed today"]


@pytest.mark.django_db
def test_the_daily_report_counts_by_utc_day_and_is_sent_once(fake_clock, admins):
    device = make_device(label="Rennes")
    before_midnight = datetime(2026, 3, 29, 23, 59, 59, tzinfo=UTC)
    make_message(device=device, status=MessageStatus.SENT, sent_at=before_midnight)
    make_message(device=device, status=MessageStatus.SENT, sent_at=before_midnight + timedelta(seconds=1))
    day_1 = {row.device: row for row in daily_figures(before_midnight.date())}["Rennes"]
    assert day_1.message_1_sent == 1
    fake_clock.current = datetime(2026, 3, 30, 0, 0, 5, tzinfo=UTC)
    assert daily_rollover_run() is True
    assert daily_rollover_run() is False
    assert [m.subject for m in mail.outbox] == ["[Relance] Daily report 2026-03-29"]
    assert "Rennes: 0/1000 sends (ok); Message 1 sent 1" in mail.outbox[0].body


@pytest.mark.django_db
@pytest.mark.usefixtures("other_workers_alive")
def test_quota_incidents_of_a_closed_day_are_closed_at_rollover(fake_clock, admins, wassenger_up):
    device = make_device(label="Lille")
    DeviceDay.objects.create(device=device, day=fake_clock.now().date(), message_1_count=800)
    health_check_run()
    fake_clock.current = fake_clock.current.replace(hour=0, minute=0) + timedelta(days=1)
    daily_rollover_run()
    assert not Incident.objects.filter(kind="quota_level", closed_at=None).exists()


@pytest.mark.django_db
def test_opt_outs_of_the_day_count_under_each_device_that_wrote_to_the_contact(
    fake_clock, django_assert_max_num_queries
):
    paris, lyon = make_device(label="Paris"), make_device(label="Lyon")
    written_by_both, written_by_paris, left_yesterday = make_contact(), make_contact(), make_contact()
    for device, contact in [(paris, written_by_both), (lyon, written_by_both), (paris, written_by_paris)]:
        make_message(campaign=make_campaign(device=device), contact=contact)
    make_message(campaign=make_campaign(device=lyon), contact=left_yesterday)
    now = fake_clock.now()
    Contact.objects.filter(pk__in=[written_by_both.pk, written_by_paris.pk]).update(opted_out_at=now)
    Contact.objects.filter(pk=left_yesterday.pk).update(opted_out_at=now - timedelta(days=1))
    for number in range(3):
        make_device(label=f"Idle {number}")  # more devices must not mean more queries

    with django_assert_max_num_queries(4):
        figures = {row.device: row.opt_outs for row in daily_figures(now.date())}

    assert figures == {"Paris": 2, "Lyon": 1, "Idle 0": 0, "Idle 1": 0, "Idle 2": 0, "Default": 0}


@pytest.mark.django_db
@pytest.mark.usefixtures("other_workers_alive")
def test_a_failure_rate_incident_of_a_closed_day_is_closed_at_rollover(
    fake_clock, admins, wassenger_up, settings
):
    settings.ALERT_FAILURE_MIN_ATTEMPTS = 2
    device = make_device(label="Brest")
    for _ in range(2):
        make_message(device=device, status=MessageStatus.FAILED, failed_at=fake_clock.now())
    health_check_run()
    assert Incident.objects.filter(kind="failure_rate", closed_at=None).count() == 1
    fake_clock.current = fake_clock.current.replace(hour=0, minute=3) + timedelta(days=1)
    daily_rollover_run()
    assert not Incident.objects.filter(closed_at=None).exists()
    assert [m.subject for m in mail.outbox if m.subject.endswith("(closed)")] == [
        "[Relance] New UTC day: Device Brest: 2 of 2 messages failed today (closed)"
    ]


@pytest.mark.django_db
def test_a_daily_report_the_mail_server_refused_is_sent_at_the_next_run(fake_clock, admins, monkeypatch):
    fake_clock.current = datetime(2026, 3, 30, 0, 0, 5, tzinfo=UTC)
    real_mail_admins = checks.mail_admins

    def refused(*args, **kwargs):
        raise ConnectionRefusedError("smtp down")

    monkeypatch.setattr(checks, "mail_admins", refused)
    assert daily_rollover_run() is False
    assert not DailyReport.objects.exists()
    monkeypatch.setattr(checks, "mail_admins", real_mail_admins)
    fake_clock.advance(300)
    assert daily_rollover_run() is True
    assert [m.subject for m in mail.outbox] == ["[Relance] Daily report 2026-03-29"]


@pytest.mark.django_db
@pytest.mark.usefixtures("other_workers_alive")
def test_a_mail_server_down_for_two_days_loses_no_report_and_closes_the_days_incidents(
    fake_clock, admins, wassenger_up, monkeypatch
):
    device = make_device(label="Lille")
    fake_clock.current = datetime(2026, 3, 28, 0, 1, tzinfo=UTC)
    daily_rollover_run()  # 2026-03-27 reported: the mail server still works
    DeviceDay.objects.create(device=device, day=fake_clock.now().date(), message_1_count=800)
    health_check_run()  # a quota incident on 03-28
    real_mail_admins = checks.mail_admins

    def refused(subject, *args, **kwargs):
        if subject.startswith("Daily report"):
            raise ConnectionRefusedError("smtp down")
        return real_mail_admins(subject, *args, **kwargs)

    monkeypatch.setattr(checks, "mail_admins", refused)
    for day in (29, 30):
        fake_clock.current = datetime(2026, 3, day, 0, 1, tzinfo=UTC)
        assert daily_rollover_run() is False
    assert not Incident.objects.filter(closed_at=None).exists()  # 03-28's ended with it
    monkeypatch.setattr(checks, "mail_admins", real_mail_admins)
    fake_clock.advance(300)
    assert daily_rollover_run() is True
    reports = [m.subject for m in mail.outbox if "Daily report" in m.subject]
    assert reports == [f"[Relance] Daily report 2026-03-{day}" for day in (27, 28, 29)]
