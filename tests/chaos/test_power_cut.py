"""Scenario 5: power cuts. Every Relance process and PostgreSQL are SIGKILLed together, three
times at random moments of a campaign, then started again, as after a power cut.

Relance runs as in production, on a private PostgreSQL of its own (test_postgres_restart.py's):
the clusters under the run supervisor (`manage.py runall`), the web under gunicorn. The sandbox
is Wassenger: it lives on, records what it accepted and calls the webhook back (acks, replies),
retrying while nothing listens. Each cut SIGKILLs the supervisor and each child's group (web,
default, senders' and number checks' clusters), gunicorn, the postmaster and every backend at
once, so that sends in flight, uncommitted outcomes and webhooks being processed are all lost
mid-way. Nobody touches anything afterwards. From the sandbox's own log: each eligible contact
got exactly one Message 1 and each replier exactly one Message 2; nothing is left `sending` or
`unknown`, and the day's counter equals what was sent.

The test process ticks the one-minute jobs (dispatcher, webhook sweeper) as the chaos suite
does, on a faster clock; its own database errors during a cut only skip that tick.
"""

import os
import random
import signal
import subprocess
import time
from contextlib import suppress
from pathlib import Path

import pytest
from django.db import connection

from campaigns.launch import campaign_launch
from messaging.models import Message, MessageStatus
from tests.chaos.conftest import (
    accepted_by_phone,
    assert_counters_match_accepted_sends,
    contacts_in_overlapping_categories,
    eligible_phones,
)
from tests.chaos.test_postgres_restart import (
    PrivatePostgres,
    _answers,
    production_env,
    repliers,
    replying_sandbox,
    settled,
    this_process_on,
    tick,
)
from tests.clusters import (
    TICK_SECONDS,
    free_port,
    gunicorn_start,
    process_tree_kill,
    qcluster_kill,
    runall_start,
)
from tests.clusters import settings_shrink as shrink
from tests.factories import make_campaign, make_device
from tests.messaging.conftest import wait_for

pytestmark = pytest.mark.slow

CONTACTS, CUTS, SEED, REPLY_SHARE = 60, 3, 8, 0.3


def postgres_sigkill(database: PrivatePostgres) -> int:
    """SIGKILL the postmaster and every backend at once (no shutdown, no checkpoint); its pid."""
    pid = int((Path(database.server.pgdata) / "postmaster.pid").read_text().split()[0])
    listed = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    for process in [pid, *map(int, listed.stdout.split())]:
        with suppress(ProcessLookupError):
            os.kill(process, signal.SIGKILL)
    return pid


def reboot_leftovers_remove(database: PrivatePostgres) -> None:
    """What a reboot clears: the dead postmaster's pid file and socket lock. Here its pid may
    live on as a zombie nobody reaps, which PostgreSQL would take for a running server."""
    pgdata = Path(database.server.pgdata)
    for leftover in [pgdata / "postmaster.pid", *Path(database.socket_dir).glob(".s.PGSQL.*")]:
        leftover.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"


class Relance:
    """Every process of a production install, started and cut together."""

    def __init__(self, env: dict, log: Path, web: str):
        self.env, self.log, self.web = env, log, web
        self.supervisor = self.gunicorn = None
        self.starts = 0

    def start(self) -> None:
        supervisor_web = f"127.0.0.1:{free_port()}"  # runserver; the sandbox calls gunicorn
        self.supervisor = runall_start(addr=supervisor_web, log=self.log, **self.env)
        wait_for(lambda: _answers(f"http://{supervisor_web}/health/"), timeout=90, interval=0.3)
        self.gunicorn = gunicorn_start(addr=self.web, log=self.log, **self.env)
        wait_for(lambda: _answers(f"http://{self.web}/health/"), timeout=60, interval=0.3)
        self.starts += 1

    def kill(self) -> None:
        if self.gunicorn is not None:
            qcluster_kill(self.gunicorn)
        if self.supervisor is not None:
            process_tree_kill(self.supervisor)


@pytest.fixture
def private_postgres():
    database = PrivatePostgres()
    yield database
    database.stop()


def test_three_power_cuts_mid_campaign_lose_nothing_and_double_nothing(
    private_postgres, django_db_blocker, settings, tmp_path
):
    env = shrink(settings)
    settings.WEBHOOK_SWEEP_AFTER_SECONDS = 1
    web = f"127.0.0.1:{free_port()}"
    sandbox = replying_sandbox(web, settings, webhook_retries=10)  # retried through each cut
    with this_process_on(private_postgres, django_db_blocker):
        production_env(env, sandbox)
        relance = Relance(env, tmp_path / "relance.log", web)
        relance.start()
        try:
            run_the_campaign_through_power_cuts(private_postgres, sandbox, relance)
        finally:
            relance.kill()
            sandbox.stop()


def run_the_campaign_through_power_cuts(database: PrivatePostgres, sandbox, relance: Relance) -> None:
    categories = contacts_in_overlapping_categories(eligible=CONTACTS, opted_out=0, invalid=0, prefix="65")
    device = make_device(gap_seconds=0.1, batch_size=25, batch_pause_seconds=0.3)
    texts = {"message_1_text": "Bonjour {{ first_name }}", "message_2_text": "Merci !"}
    campaign = make_campaign(device=device, categories=categories, **texts)
    campaign_launch(campaign=campaign)
    draw = random.Random(SEED)
    cut_at = sorted(draw.sample(range(5, CONTACTS - 5), CUTS))  # accepted Message 1s at each cut
    deadline = time.monotonic() + 300
    while not settled(sandbox):
        assert time.monotonic() < deadline, relance.log.read_text()[-3000:]
        if cut_at and sandbox.control("GET", "stats")["messages"] >= cut_at[0]:
            cut_at.pop(0)
            time.sleep(draw.uniform(0, 0.2))  # anywhere in a send, an outcome, a webhook
            power_cut(database, relance)
        tick()
        time.sleep(TICK_SECONDS)
    assert not cut_at and relance.starts == CUTS + 1, "the campaign ended before every cut"

    phones = eligible_phones(campaign)
    assert accepted_by_phone(sandbox, "Bonjour") == dict.fromkeys(phones, 1)
    assert accepted_by_phone(sandbox, "Merci") == dict.fromkeys(repliers(phones), 1)
    left = Message.objects.filter(status__in=[MessageStatus.SENDING, MessageStatus.UNKNOWN])
    assert not left.exists()
    assert_counters_match_accepted_sends()


def power_cut(database: PrivatePostgres, relance: Relance) -> None:
    """Everything dies at once; then the machine boots: PostgreSQL first, then Relance."""
    postmaster = postgres_sigkill(database)
    relance.kill()
    wait_for(lambda: not _alive(postmaster), timeout=10, interval=0.05)
    connection.close()
    reboot_leftovers_remove(database)
    database.server.ensure_postgres_running()
    relance.start()
