"""/health/ and check_workers: what an external monitor and cron see."""

import os
import socket
import subprocess
import sys
import time
from datetime import timedelta

import pytest
import requests
from django.conf import settings
from django.core import mail
from django.core.management import call_command
from django.urls import reverse

from messaging.models import Device, SenderLoop
from monitoring.checks import health_check_run
from monitoring.health import heartbeat_write
from monitoring.models import Incident
from tests.clusters import qcluster_kill, qcluster_start
from tests.factories import make_device, make_message, make_sending_campaign, make_workers_alive

pytestmark = pytest.mark.django_db


@pytest.mark.usefixtures("other_workers_alive")
def test_health_needs_no_login_and_says_healthy_with_a_fresh_heartbeat(client, fake_clock):
    heartbeat_write()
    response = client.get("/health/")
    assert response.status_code == 200
    body = response.json()
    assert body["healthy"] is True and body["checks"]["database"]["ok"] is True


@pytest.mark.usefixtures("other_workers_alive")
def test_health_is_503_with_the_reason_when_the_heartbeat_is_older_than_5_minutes(client, fake_clock):
    heartbeat_write()
    fake_clock.advance(301)
    response = client.get("/health/")
    assert response.status_code == 503
    assert response.json()["reasons"] == ["workers down: default heartbeat older than 300 s"]


@pytest.mark.usefixtures("other_workers_alive")
def test_health_shows_what_the_last_check_found_of_wassenger_without_failing_for_it(client, fake_clock):
    assert client.get("/health/").json()["checks"]["wassenger"] == {"ok": None, "error": "not checked yet"}
    heartbeat_write({"wassenger": {"ok": False, "error": "WassengerUnavailable"}})
    response = client.get("/health/")
    assert response.status_code == 200
    assert response.json()["checks"]["wassenger"] == {"ok": False, "error": "WassengerUnavailable"}


def test_health_is_503_when_no_heartbeat_was_ever_written(client, fake_clock):
    assert client.get("/health/").status_code == 503


@pytest.mark.usefixtures("other_workers_alive")
def test_health_is_503_when_a_device_is_halted_and_shows_no_personal_data(client, fake_clock):
    heartbeat_write()
    device = make_device(label="Secret label", phone="+33612345678")
    Device.objects.filter(pk=device.pk).update(halted_at=fake_clock.now())
    response = client.get("/health/")
    assert response.status_code == 503 and response.json()["reasons"] == ["a device is halted"]
    assert b"+33612345678" not in response.content and b"Secret label" not in response.content


@pytest.mark.usefixtures("other_workers_alive")
def test_health_says_when_sending_waits_for_midnight(client, fake_clock):
    heartbeat_write()
    device = make_device(daily_limit=10)
    device.days.create(day=fake_clock.now().date(), message_1_count=10)
    devices = client.get("/health/").json()["checks"]["devices"]["devices"]
    mine = next(d for d in devices if d["id"] == device.pk)
    assert mine["note"] == "daily limit reached: sending waits for 00:00 UTC"


def test_check_workers_exits_0_when_alive_and_1_naming_the_silent_one(fake_clock, capsys):
    make_workers_alive()
    call_command("check_workers")
    fake_clock.advance(timedelta(minutes=6).total_seconds())
    heartbeat_write()  # the default cluster beats on; the number checks and senders fell silent
    with pytest.raises(SystemExit) as exit_info:
        call_command("check_workers")
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "workers down: verify heartbeat 360 s old" in err
    assert "workers down: senders heartbeat 360 s old" in err
    assert "default" not in err


@pytest.mark.parametrize("silent", ["default", "verify", "senders"])
def test_health_is_503_naming_whichever_cluster_is_silent_and_one_incident_is_raised_for_it(
    client, fake_clock, settings, silent
):
    settings.ADMINS = [("Ops", "ops@example.com")]
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    make_workers_alive()
    assert client.get("/health/").status_code == 200
    fake_clock.advance(301)
    for name in {"default", "verify", "senders"} - {silent}:  # the others beat on
        if name == "senders":
            SenderLoop.objects.update(seen_at=fake_clock.now())
        else:
            heartbeat_write(name=name)

    response = client.get("/health/")

    assert response.status_code == 503
    assert response.json()["reasons"] == [f"workers down: {silent} heartbeat older than 300 s"]
    assert response.json()["checks"]["workers"]["silent"] == [silent]
    with pytest.raises(SystemExit):
        call_command("check_workers")
    call_command_quietly_twice()
    assert [(i.kind, i.key) for i in Incident.objects.filter(closed_at=None)] == [("workers_down", silent)]
    subject = f"[Relance] Workers down ({silent}): last heartbeat 301 s ago"
    assert [m.subject for m in mail.outbox] == [subject]


def call_command_quietly_twice() -> None:
    """check_workers again (cron runs it every minute): still one incident, one email."""
    for _ in range(2):
        with pytest.raises(SystemExit):
            call_command("check_workers")


@pytest.mark.django_db(transaction=True)
def test_a_real_cluster_makes_health_turn_200_within_one_period(client):
    assert client.get("/health/").status_code == 503
    call_command("setup_schedules", verbosity=0)
    started = [qcluster_start(), qcluster_start(name="verify"), qcluster_start(name="senders")]
    try:
        deadline = time.monotonic() + 120  # the health check runs every 2 minutes
        while client.get("/health/").status_code != 200:
            assert time.monotonic() < deadline, client.get("/health/").json()
            time.sleep(1)
        assert set(client.get("/health/").json()["checks"]["workers"]["clusters"]) == {
            "default",
            "verify",
            "senders",
        }
    finally:
        for process in started:
            qcluster_kill(process)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_health_is_503_with_the_reason_when_the_database_is_unreachable(tmp_path):
    """The web process itself, as production runs it, with PostgreSQL gone: an external
    monitor must get a clean 503 that says why, never a 500 or a hung request."""
    port = _free_port()
    nowhere = f"postgres://relance@/relance?host={tmp_path}&connect_timeout=2"
    web = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "1"],
        cwd=settings.BASE_DIR,
        env={**os.environ, "DATABASE_URL": nowhere},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        response = _get_when_listening(f"http://127.0.0.1:{port}/health/")
        assert response.status_code == 503
        assert response.json() == {
            "healthy": False,
            "reasons": ["database unreachable"],
            "checks": {"database": {"ok": False, "error": "OperationalError"}},
        }
    finally:
        web.terminate()
        web.wait(timeout=10)


def _get_when_listening(url: str, timeout: float = 20.0) -> requests.Response:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return requests.get(url, timeout=10)
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_workers_down_is_raised_when_the_default_cluster_stops_though_the_others_still_run(
    client, fake_clock, monkeypatch, settings
):
    settings.ADMINS = [("Ops", "ops@example.com")]
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    # The senders' and the number checks' clusters still report themselves (same name).
    monkeypatch.setattr("monitoring.health.cluster_reports_itself", lambda: True)
    assert client.get("/health/").status_code == 503  # first start: no heartbeat yet, no alarm
    with pytest.raises(SystemExit):
        call_command("check_workers")
    assert not Incident.objects.exists()
    make_workers_alive()
    fake_clock.advance(301)  # then the default cluster dies
    SenderLoop.objects.update(seen_at=fake_clock.now())
    heartbeat_write(name="verify")
    assert client.get("/health/").status_code == 503
    with pytest.raises(SystemExit):
        call_command("check_workers")
    assert [(i.kind, i.key) for i in Incident.objects.filter(closed_at=None)] == [("workers_down", "default")]
    assert [m.subject for m in mail.outbox] == ["[Relance] Workers down (default): last heartbeat 301 s ago"]


@pytest.mark.usefixtures("other_workers_alive")
def test_reading_health_and_the_dashboard_with_a_stale_heartbeat_opens_no_incident_the_checks_do(
    client, django_user_model, fake_clock, monkeypatch, settings
):
    """GET requests only read: incidents and their emails come from the 2-minute check and
    check_workers, never from /health/ or the dashboard's live part."""
    settings.ADMINS = [("Ops", "ops@example.com")]
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    monkeypatch.setattr("monitoring.checks.wassenger_check", lambda: {"ok": True})
    device = make_device(label="Main")
    Device.objects.filter(pk=device.pk).update(halted_at=fake_clock.now(), halted_reason="logged out")
    heartbeat_write()
    fake_clock.advance(301)
    client.force_login(django_user_model.objects.create_user("viewer", password="x"))
    assert client.get("/health/").status_code == 503
    assert client.get(reverse("dashboard-live")).status_code == 200
    assert client.get(reverse("dashboard")).status_code == 200
    assert not Incident.objects.exists() and not mail.outbox

    with pytest.raises(SystemExit):
        call_command("check_workers")
    assert list(Incident.objects.filter(closed_at=None).values_list("kind", flat=True)) == ["workers_down"]
    health_check_run()  # the cluster is back: its check closes the outage and raises the halt
    open_now = Incident.objects.filter(closed_at=None).values_list("kind", flat=True)
    assert list(open_now) == ["device_halted"]
    assert [m.subject for m in mail.outbox] == [
        "[Relance] Workers down (default): last heartbeat 301 s ago",
        "[Relance] Resolved: Workers down (default): last heartbeat 301 s ago",
        "[Relance] Device Main halted: logged out",
    ]


def test_senders_up_but_not_sending_while_messages_are_due_are_reported_stuck(client, fake_clock, settings):
    settings.ADMINS = [("Ops", "ops@example.com")]
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    device = make_device(label="Paris")
    campaign = make_sending_campaign(device=device)
    make_message(campaign=campaign, next_attempt_at=fake_clock.now())
    make_workers_alive()
    assert client.get("/health/").status_code == 200  # due just now: the sender is on it

    fake_clock.advance(settings.SENDER_STUCK_SECONDS + 1)
    make_workers_alive()  # every heartbeat fresh: the loops run, yet nothing went out

    body = client.get("/health/").json()
    assert body["reasons"] == [f"senders stuck: device {device.pk} has had messages due for 601 s, none sent"]
    call_command("check_workers")  # alive: check_workers is about heartbeats only
    from monitoring.checks import senders_stuck_incident_sync
    from monitoring.health import workers_state

    senders_stuck_incident_sync(workers_state())
    assert [(i.kind, i.key) for i in Incident.objects.filter(closed_at=None)] == [
        ("senders_stuck", str(device.pk))
    ]

    Device.objects.filter(pk=device.pk).update(last_sent_at=fake_clock.now())  # it sends again
    senders_stuck_incident_sync(workers_state())
    assert not Incident.objects.filter(closed_at=None).exists()


def test_a_device_waiting_for_its_daily_limit_or_halted_is_not_stuck(client, fake_clock, settings):
    full = make_device(label="Full", daily_limit=1)
    full.days.create(day=fake_clock.now().date(), message_1_count=1)
    halted = make_device(label="Halted")
    Device.objects.filter(pk=halted.pk).update(halted_at=fake_clock.now())
    for device in (full, halted):
        make_message(campaign=make_sending_campaign(device=device), next_attempt_at=fake_clock.now())
    fake_clock.advance(settings.SENDER_STUCK_SECONDS + 60)
    make_workers_alive()

    assert client.get("/health/").json()["checks"]["senders_stuck"] == {"ok": True, "devices": []}
