"""Shared fixtures. Tests run on real PostgreSQL (embedded unless DATABASE_URL is set)."""

import os
from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
from django.core.management import base, get_commands, load_command_class

from config import clock

# The suite was written for sending at any hour in the legacy rhythm: by default its devices
# send always, with no jitter, no warm-up and no halt on trouble (for this process and the
# clusters and senders it starts, which read the environment). Tests of those rules turn them on.
LEGACY_PACING = {
    "DEVICE_SEND_WINDOW": "always",
    "DEVICE_GAP_JITTER": "0",
    "DEVICE_BATCH_JITTER": "0",
    "DEVICE_WARMUP": "",
    "DEVICE_PAUSE_ON_TROUBLE": "false",
}
os.environ.update(LEGACY_PACING)


@pytest.fixture(autouse=True, scope="session")
def _legacy_pacing_by_default():
    from django.conf import settings

    settings.DEVICE_SEND_WINDOW, settings.DEVICE_WARMUP = "always", ""
    settings.DEVICE_GAP_JITTER = settings.DEVICE_BATCH_JITTER = 0.0
    settings.DEVICE_PAUSE_ON_TROUBLE = False


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix):
    """One test database per pytest run, so that two runs on one machine never collide."""
    from django.conf import settings

    database = settings.DATABASES["default"]
    database.setdefault("TEST", {})["NAME"] = f"test_{database['NAME']}_{os.getpid()}"


class FakeClock:
    """The one clock, frozen and moved by hand; `sleep` advances it instead of waiting."""

    def __init__(self, start: datetime):
        self.current = start

    def now(self) -> datetime:
        return self.current

    def advance(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.advance(seconds)


@pytest.fixture
def fake_clock(monkeypatch) -> FakeClock:
    fake = FakeClock(datetime(2026, 3, 29, 9, 0, tzinfo=UTC))
    monkeypatch.setattr(clock, "now", fake.now)
    monkeypatch.setattr(clock, "sleep", fake.sleep)
    return fake


@pytest.fixture
def other_workers_alive(fake_clock, monkeypatch):
    """The number checks' cluster and a sender loop alive, beating as the clock moves, so
    that a test of the default cluster's checks sees only what it is about."""
    from tests.factories import make_other_workers_beat

    advance = fake_clock.advance

    def advance_and_beat(seconds: float) -> None:
        advance(seconds)
        make_other_workers_beat()

    monkeypatch.setattr(fake_clock, "advance", advance_and_beat)
    make_other_workers_beat()


@pytest.fixture
def manage(monkeypatch, capsys):
    """Run a management command as `manage.py NAME ARGS` does: returns (exit code, out, err)."""
    # run_from_argv closes every connection at the end, which would end the test's transaction.
    monkeypatch.setattr(base, "connections", mock.Mock())

    def run_command(name: str, *arguments) -> tuple[int, str, str]:
        command = load_command_class(get_commands()[name], name)
        try:
            command.run_from_argv(["manage.py", name, *map(str, arguments)])
            code = 0
        except SystemExit as exit:
            code = exit.code
        output = capsys.readouterr()
        return code, output.out, output.err

    return run_command
