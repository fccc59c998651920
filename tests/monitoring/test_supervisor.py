"""The run command's supervisor: a stopped cluster leaves no worker behind; a dead child
comes back; schedules are declared once however often setup runs."""

import os
import signal
import subprocess
import sys
import time

import pytest
from django.core.management import call_command
from django.db import connection
from django_q.models import Schedule

from config.embedded_pg import url_for
from config.schedules import SCHEDULES
from monitoring.supervisor import Child, Supervisor, manage_py
from tests.messaging.conftest import BASE_DIR, wait_for


def group_members(pgid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "-g", str(pgid)], capture_output=True, text=True).stdout
    return [int(pid) for pid in out.split()]


@pytest.mark.django_db(transaction=True)
def test_stopping_the_cluster_leaves_no_worker_consuming_tasks(monkeypatch):
    monkeypatch.chdir(BASE_DIR)
    cluster = Child("cluster", manage_py("qcluster"), env={"DATABASE_URL": url_for(connection.settings_dict)})
    cluster.start()
    pgid = cluster.process.pid
    try:
        # The sentinel forks its workers, monitor and pusher: a group of several processes.
        wait_for(lambda: len(group_members(pgid)) >= 4, timeout=30, interval=0.2)
        Supervisor([cluster]).stop_all()
        assert cluster.process.returncode is not None
        assert group_members(pgid) == []
    finally:
        cluster.signal_group(signal.SIGKILL)


def test_a_child_that_dies_is_restarted(monkeypatch):
    monkeypatch.setattr("monitoring.supervisor.RESTART_BACKOFF_SECONDS", (0,))
    child = Child("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"])
    supervisor = Supervisor([child])
    child.start()
    first = child.process.pid
    os.kill(first, signal.SIGKILL)
    child.process.wait()
    supervisor._restart_dead_children()
    try:
        assert child.running() and child.process.pid != first and child.restarts == 1
    finally:
        supervisor.stop_all()
    assert not child.running()


def test_what_a_dead_child_forked_is_killed_before_it_is_restarted(monkeypatch):
    """A qcluster main process killed on its own leaves its workers: they must not live on."""
    monkeypatch.setattr("monitoring.supervisor.RESTART_BACKOFF_SECONDS", (0,))
    sleeper = "import time; time.sleep(60)"
    forks = (
        f"import subprocess, sys, time\nsubprocess.Popen([sys.executable, '-c', {sleeper!r}])\ntime.sleep(60)"
    )
    child = Child("forker", [sys.executable, "-c", forks])
    supervisor = Supervisor([child])
    child.start()
    first = child.process.pid
    wait_for(lambda: len(group_members(first)) == 2, timeout=10, interval=0.1)
    os.kill(first, signal.SIGKILL)
    child.process.wait()
    supervisor._restart_dead_children()
    try:
        wait_for(lambda: group_members(first) == [], timeout=5, interval=0.1)
        assert child.running() and child.process.pid != first
    finally:
        supervisor.stop_all()


@pytest.mark.django_db
def test_setup_schedules_is_idempotent():
    call_command("setup_schedules", verbosity=0)
    call_command("setup_schedules", verbosity=0)
    stored = sorted(Schedule.objects.values_list("name", "func"))
    assert stored == sorted((spec.name, spec.func) for spec in SCHEDULES)


def test_stop_all_gives_a_stubborn_child_the_grace_period_then_kills_it(monkeypatch):
    monkeypatch.setattr("monitoring.supervisor.STOP_GRACE_SECONDS", 0.5)
    stubborn = Child(
        "stubborn",
        [
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)",
        ],
    )
    stubborn.start()
    time.sleep(0.3)  # let it install its handler
    started = time.monotonic()
    Supervisor([stubborn]).stop_all()
    assert time.monotonic() - started < 5
    stubborn.process.wait(timeout=5)
    assert stubborn.process.returncode == -signal.SIGKILL
