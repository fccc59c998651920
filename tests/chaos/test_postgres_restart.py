"""Scenario 2: PostgreSQL restarts in the middle of a campaign.

Relance runs as in production, on a private PostgreSQL of its own (the shared one serves
other test runs and is never restarted): the clusters under the run supervisor
(`manage.py runall`), the web under gunicorn, whose workers keep their database
connections between requests. The sandbox calls the webhook back (acks and replies).
A third of the way through, PostgreSQL stops for two seconds and starts again. Nobody
touches anything: the web answers again, the clusters carry on, every contact gets
Message 1 once, every replier Message 2 once, every webhook is stored once and processed,
and the day's counter equals what was sent.
"""

import tempfile
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
from django.db import DatabaseError, InterfaceError, connection

from campaigns.launch import campaign_launch
from config.embedded_pg import url_for
from messaging.dispatch import dispatch_run
from messaging.models import Message
from messaging.wassenger.sandbox.state import sandbox_fate
from tests.chaos.conftest import (
    accepted_by_phone,
    assert_counters_match_accepted_sends,
    contacts_in_overlapping_categories,
    eligible_phones,
)
from tests.clusters import (
    OPEN,
    TICK_SECONDS,
    free_port,
    gunicorn_start,
    process_tree_kill,
    qcluster_kill,
    runall_start,
    settings_shrink,
)
from tests.factories import make_campaign, make_device
from tests.messaging.conftest import SANDBOX_TOKEN, start_sandbox, wait_for
from tests.webhooks.conftest import SECRET, URL
from webhooks.models import EventStatus, WebhookEvent
from webhooks.processing import events_sweep

pytestmark = pytest.mark.slow

CONTACTS, RESTART_AT, OUTAGE_SECONDS = 90, 30, 2.0
SEED, REPLY_SHARE = 8, 0.3


class PrivatePostgres:
    """A PostgreSQL server of this test's own (pgserver), in a temporary directory."""

    def __init__(self):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pgserver

        self.server = pgserver.get_server(tempfile.mkdtemp(prefix="relance-chaos-pg-"), cleanup_mode="delete")
        self.socket_dir = str(self.server.get_postmaster_info().socket_dir)
        self.server.psql('CREATE DATABASE "relance";')

    def restart(self, outage_seconds: float) -> None:
        """A fast stop (every session cut), a pause with no database at all, a start."""
        from pgserver._commands import pg_ctl

        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.server.pgdata, user=self.server.system_user)
        time.sleep(outage_seconds)
        self.server.ensure_postgres_running()

    def stop(self) -> None:
        self.server.cleanup()


@contextmanager
def this_process_on(database: PrivatePostgres, django_db_blocker):
    """Point this process's connection at the private server for the test, then back."""
    saved = dict(connection.settings_dict)
    connection.close()
    private = {"NAME": "relance", "HOST": database.socket_dir, "USER": "postgres", "PASSWORD": "", "PORT": ""}
    connection.settings_dict.update(private)
    try:
        with django_db_blocker.unblock():
            yield
    finally:
        connection.close()
        connection.settings_dict.update(saved)


@pytest.fixture
def private_postgres():
    database = PrivatePostgres()
    yield database
    database.stop()


def repliers(phones: set[str]) -> set[str]:
    fates = {p: sandbox_fate(p, seed=SEED, reply_share=REPLY_SHARE, stop_share=0) for p in phones}
    return {phone for phone, fate in fates.items() if fate == "reply"}


def tick() -> None:
    """The one-minute jobs, run now; a database error (the outage) only skips this tick."""
    try:
        dispatch_run()
        events_sweep()
    except (DatabaseError, InterfaceError):
        connection.close()


def settled(sandbox) -> bool:
    """Nothing left to send, every webhook delivered (or given up) and processed."""
    stats = sandbox.control("GET", "stats")
    counts = stats["counts"]
    webhooks = counts.get("webhooks_delivered", 0) + counts.get("webhooks_given_up", 0)
    if stats["scheduled_steps"] or webhooks < 2 * stats["messages"] + counts.get("replies", 0):
        return False
    try:
        # Not the task queue: a task whose acknowledgement the outage swallowed stays in it
        # until django-q's retry; its event is processed by the sweeper meanwhile.
        return not (
            Message.objects.filter(status__in=OPEN).exists()
            or WebhookEvent.objects.filter(status=EventStatus.RECEIVED).exists()
        )
    except (DatabaseError, InterfaceError):
        connection.close()
        return False


def replying_sandbox(web: str, settings, *, webhook_retries: int = 8):
    """The sandbox, calling back `web`'s webhook (acks, and replies of REPLY_SHARE contacts),
    retrying a webhook nobody took; this process's settings pointed at it."""
    sandbox = start_sandbox(
        "--webhook-url", f"http://{web}{URL}?secret={quote(SECRET)}", "--seed", str(SEED),
        "--reply-share", str(REPLY_SHARE), "--stop-share", "0",
        "--delivered-delay", "0.05", "--read-delay", "0.05", "--reply-delay", "0.05",
        "--webhook-retries", str(webhook_retries), "--webhook-backoff", "0.2",
    )  # fmt: skip
    settings.WASSENGER_API_URL, settings.WASSENGER_API_TOKEN = f"{sandbox.url}/v1", SANDBOX_TOKEN
    return sandbox


def production_env(env: dict, sandbox) -> dict:
    """`env` for Relance's processes: this process's database, the sandbox as Wassenger."""
    env.update(
        DATABASE_URL=url_for(connection.settings_dict),
        WASSENGER_SANDBOX="false",
        WASSENGER_API_URL=f"{sandbox.url}/v1",
        WASSENGER_API_TOKEN=SANDBOX_TOKEN,
        WASSENGER_WEBHOOK_SECRET=SECRET,
        DJANGO_SUPERUSER_PASSWORD="chaos-admin-password",
    )
    return env


def test_a_postgres_restart_mid_campaign_is_survived_by_web_and_clusters_unattended(
    private_postgres, django_db_blocker, settings, tmp_path
):
    env = settings_shrink(settings)
    settings.WEBHOOK_SWEEP_AFTER_SECONDS = 1
    web = f"127.0.0.1:{free_port()}"
    sandbox = replying_sandbox(web, settings)
    log = tmp_path / "relance.log"
    with this_process_on(private_postgres, django_db_blocker):
        production_env(env, sandbox)
        # runall migrates, then supervises the clusters (and a development web server the
        # test leaves alone); the sandbox calls the production web server, gunicorn.
        supervisor_web = f"127.0.0.1:{free_port()}"
        relance = runall_start(addr=supervisor_web, log=log, **env)
        gunicorn = None
        try:
            wait_for(lambda: _answers(f"http://{supervisor_web}/health/"), timeout=60, interval=0.3)
            gunicorn = gunicorn_start(addr=web, log=log, **env)
            wait_for(lambda: _answers(f"http://{web}/health/"), timeout=30, interval=0.3)
            run_the_campaign_through_a_restart(private_postgres, sandbox, web, log)
        finally:
            if gunicorn is not None:
                qcluster_kill(gunicorn)
            process_tree_kill(relance)
            sandbox.stop()


def run_the_campaign_through_a_restart(database: PrivatePostgres, sandbox, web: str, log: Path) -> None:
    categories = contacts_in_overlapping_categories(eligible=CONTACTS, opted_out=0, invalid=0, prefix="64")
    device = make_device(gap_seconds=0.05, batch_size=25, batch_pause_seconds=0.3)
    texts = {"message_1_text": "Bonjour {{ first_name }}", "message_2_text": "Merci !"}
    campaign = make_campaign(device=device, categories=categories, **texts)
    campaign_launch(campaign=campaign)
    deadline = time.monotonic() + 90
    restarted = False
    while not settled(sandbox):
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        if not restarted and sandbox.control("GET", "stats")["messages"] >= RESTART_AT:
            database.restart(OUTAGE_SECONDS)
            restarted = True
        tick()
        time.sleep(TICK_SECONDS)

    phones = eligible_phones(campaign)
    assert accepted_by_phone(sandbox, "Bonjour") == dict.fromkeys(phones, 1)
    assert accepted_by_phone(sandbox, "Merci") == dict.fromkeys(repliers(phones), 1)
    counts = sandbox.control("GET", "stats")["counts"]
    assert counts.get("webhook_attempts_failed", 0) > 0, "the web never saw the outage"
    assert counts.get("webhooks_given_up", 0) == 0, log.read_text()[-3000:]
    events = WebhookEvent.objects.all()
    assert events.count() == counts["webhooks_delivered"]
    assert set(events.values_list("status", flat=True)) == {EventStatus.PROCESSED}
    assert_counters_match_accepted_sends()
    health = requests.get(f"http://{web}/health/", timeout=10).json()
    assert health["checks"]["database"] == {"ok": True}


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code in (200, 503)
    except (requests.ConnectionError, requests.Timeout):
        # A worker still booting on a loaded machine may take longer than 2 s: not up yet.
        return False
