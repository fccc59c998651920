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

from messaging.models import Device
from monitoring.checks import health_check_run
from monitoring.health import heartbeat_write
from monitoring.models import Incident
from tests.clusters import qcluster_kill, qcluster_start
from tests.factories import make_device

pytestmark = pytest.mark.django_db


def test_health_needs_no_login_and_says_healthy_with_a_fresh_heartbeat(client, fake_clock):
    heartbeat_write()
    response = client.get("/health/")
    assert response.status_code == 200
    body = response.json()
    assert body["healthy"] is True and body["checks"]["database"]["ok"] is True


def test_health_is_503_with_the_reason_when_the_heartbeat_is_older_than_5_minutes(client, fake_clock):
    heartbeat_write()
    fake_clock.advance(301)
    response = client.get("/health/")
    assert response.status_code == 503
    assert response.json()["reasons"] == ["workers down: heartbeat older than 300 s"]


def test_health_shows_what_the_last_check_found_of_wassenger_without_failing_for_it(client, fake_clock):
    assert client.get("/health/").json()["checks"]["wassenger"] == {"ok": None, "error": "not checked yet"}
    heartbeat_write({"wassenger": {"ok": False, "error": "WassengerUnavailable"}})
    response = client.get("/health/")
    assert response.status_code == 200
    assert response.json()["checks"]["wassenger"] == {"ok": False, "error": "WassengerUnavailable"}


def test_health_is_503_when_no_heartbeat_was_ever_written(client, fake_clock):
    assert client.get("/health/").status_code == 503


def test_health_is_503_when_a_device_is_halted_and_shows_no_personal_data(client, fake_clock):
    heartbeat_write()
    device = make_device(label="Secret label", phone="+33612345678")
    Device.objects.filter(pk=device.pk).update(halted_at=fake_clock.now())
    response = client.get("/health/")
    assert response.status_code == 503 and response.json()["reasons"] == ["a device is halted"]
    assert b"+33612345678" not in response.content and b"Secret label" not in response.content


def test_health_says_when_sending_waits_for_midnight(client, fake_clock):
    heartbeat_write()
    device = make_device(daily_limit=10)
    device.days.create(day=fake_clock.now().date(), message_1_count=10)
    devices = client.get("/health/").json()["checks"]["devices"]["devices"]
    mine = next(d for d in devices if d["id"] == device.pk)
    assert mine["note"] == "daily limit reached: sending waits for 00:00 UTC"


def test_check_workers_exits_0_when_alive_and_1_when_the_heartbeat_is_stale(fake_clock, capsys):
    heartbeat_write()
    call_command("check_workers")
    fake_clock.advance(timedelta(minutes=6).total_seconds())
    with pytest.raises(SystemExit) as exit_info:
        call_command("check_workers")
    assert exit_info.value.code == 1
    assert "workers down: heartbeat 360 s old" in capsys.readouterr().err


@pytest.mark.django_db(transaction=True)
def test_a_real_cluster_makes_health_turn_200_within_one_period(client):
    assert client.get("/health/").status_code == 503
    cluster = qcluster_start()
    try:
        deadline = time.monotonic() + 120  # the health check runs every 2 minutes
        while client.get("/health/").status_code != 200:
            assert time.monotonic() < deadline, client.get("/health/").json()
            time.sleep(1)
    finally:
        qcluster_kill(cluster)


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
    heartbeat_write()
    fake_clock.advance(301)  # then the default cluster dies
    assert client.get("/health/").status_code == 503
    with pytest.raises(SystemExit):
        call_command("check_workers")
    assert Incident.objects.get(closed_at=None).kind == "workers_down"
    assert [m.subject for m in mail.outbox] == ["[Relance] Workers down: last heartbeat 301 s ago"]


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
        "[Relance] Workers down: last heartbeat 301 s ago",
        "[Relance] Resolved: Workers down: last heartbeat 301 s ago",
        "[Relance] Device Main halted: logged out",
    ]
