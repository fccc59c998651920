"""A year of data against a week of it: every page, endpoint and job, timed on both.

Two databases on the same server, seeded with set-based SQL (bench/scale_seed.py): the
large one at `--scale` (1 = 2,000,000 messages over 300 campaigns and 10 devices, 400,000
contacts, 6,000,000 webhook events, 3,000,000 attempts) and the small one at 1/1000 of it.
Both are kept between runs (`relance_at_scale_<scale>`) and seeded again only when the
migrations or the seed change. Each database is measured by a child process of its own:
every operator page with its live JSON, /health/, the admin changelists, the API's lists,
and every periodic job (jobs run in a transaction rolled back afterwards, so the data stays
as seeded), `--runs` times each after one warm-up run; median and p95 of each.

ratio = small-database median / large-database median of the worst of them (higher is
better; 1 = no slower with a thousand times the data); goal >= 0.5. Also: the CSV export of
the 100,000-recipient campaign, in a child of its own: rows/s and peak RSS (< 150 MB).

    python bench/at_scale.py [--scale 1] [--runs 20] [--reseed]

At scale 1 on 2 busy cores, seeding takes about 6 minutes (once) and measuring about 5.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness
import scale_seed

RATIO_GOAL = 0.5
RSS_GOAL_MB = 150
SMALL_FACTOR = 1000


def main() -> None:
    options = _arguments()
    if options.child:
        _serve_timings()
        return
    if options.csv_child:
        print(json.dumps(_csv_export()))
        return
    large, small = options.scale, options.scale / SMALL_FACTOR
    scales = {"large": large, "small": small}
    urls = {size: _database(scale, reseed=options.reseed) for size, scale in scales.items()}
    timings = _measure_interleaved(urls, options.runs)
    csv = _child(["--csv-child"], urls["large"])
    _report(options, timings, csv)


def _arguments():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="1 = a year (2,000,000 messages)")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--reseed", action="store_true", help="seed both databases again")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--csv-child", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args()


# --- The databases, kept between runs -----------------------------------------------------------


def schema_version() -> str:
    """Changes when a migration or the seed does: the kept database is then seeded again."""
    files = sorted(harness.BASE_DIR.glob("*/migrations/*.py"))
    digest = hashlib.sha256(scale_seed.SEED_VERSION.encode())
    for path in files:
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def _database(scale: float, *, reseed: bool) -> str:
    """The URL of the kept database at `scale`, created and seeded if missing or out of date."""
    import psycopg

    from config.embedded_pg import url_for

    entry = harness.server_entry()
    name = "relance_at_scale_" + f"{scale:g}".replace(".", "_").replace("-", "m")
    url = url_for(entry, name)
    admin = harness._libpq(url_for(entry, "postgres"))
    version = schema_version()
    with psycopg.connect(admin, autocommit=True) as connection:
        exists = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
    if exists and not reseed and _seeded_version(url) == version:
        return url
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')
    _say(f"seeding {name} (scale {scale:g}) …")
    started = time.monotonic()
    migrate = [sys.executable, "manage.py", "migrate", "-v0"]
    subprocess.run(migrate, cwd=harness.BASE_DIR, check=True, env=_env(url))
    seeded_at = datetime.now(UTC)
    with psycopg.connect(harness._libpq(url), autocommit=True) as connection:
        scale_seed.seed(connection, scale, now=seeded_at, say=_say)
        connection.execute("CREATE TABLE bench_seed (version text, seeded_at timestamptz, scale float)")
        connection.execute("INSERT INTO bench_seed VALUES (%s, %s, %s)", [version, seeded_at, scale])
    _say(f"seeded {name} in {time.monotonic() - started:.0f} s")
    return url


def _seeded_version(url: str) -> str | None:
    import psycopg

    with psycopg.connect(harness._libpq(url), autocommit=True) as connection:
        try:
            return connection.execute("SELECT version FROM bench_seed").fetchone()[0]
        except psycopg.Error:
            return None


def _env(url: str) -> dict:
    import os

    django = {"DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "config.settings", "LOG_LEVEL": "ERROR"}
    return {**os.environ, **django}


def _child(arguments: list[str], url: str) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, *arguments],
        cwd=harness.BASE_DIR,
        env=_env(url),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        sys.stderr.write(done.stderr[-4000:])
        raise SystemExit(f"{' '.join(arguments)} failed")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- Both databases measured in turns ------------------------------------------------------------
#
# One child process per database, each with Django set up on it, runs one target when asked and
# answers with its time. The parent asks them in turns, run after run: a change in the machine's
# load (other work on a shared machine) weighs on both databases alike.


class _Timer:
    def __init__(self, url: str):
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--child"],
            cwd=harness.BASE_DIR,
            env=_env(url),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.names = json.loads(self._answer())

    def _answer(self) -> str:
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit(f"the timing child stopped (exit {self.process.wait()})")
        return line

    def time(self, name: str) -> float:
        self.process.stdin.write(name + "\n")
        self.process.stdin.flush()
        return float(self._answer())

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


def _measure_interleaved(urls: dict, runs: int) -> dict:
    timers = {size: _Timer(url) for size, url in urls.items()}
    seconds = {size: {} for size in timers}
    try:
        for name in timers["large"].names:
            for timer in timers.values():
                timer.time(name)  # warm-up: caches, prepared statements, the buffer cache
            for size in seconds:
                seconds[size][name] = []
            for _ in range(runs):
                for size, timer in timers.items():
                    seconds[size][name].append(timer.time(name))
    finally:
        for timer in timers.values():
            timer.close()
    return {
        size: {name: _summary(values) for name, values in by_name.items()}
        for size, by_name in seconds.items()
    }


def _summary(seconds: list[float]) -> dict:
    seconds = sorted(seconds)
    return {
        "median_ms": round(1000 * statistics.median(seconds), 2),
        "p95_ms": round(1000 * seconds[max(0, round(0.95 * len(seconds)) - 1)], 2),
    }


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --- In the child: Django on one database ------------------------------------------------------


def _django(url: str | None = None):
    import django

    django.setup()
    from django.conf import settings
    from django.db import connection

    # Seeded data is as of the seed: the clock stands still there, so that every run of a job
    # finds the same work on both databases (no reply window closes while they are measured).
    with connection.cursor() as cursor:
        cursor.execute("SELECT seeded_at FROM bench_seed")
        seeded_at = cursor.fetchone()[0]
    from config import clock

    clock.now = lambda: seeded_at
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.ALLOWED_HOSTS = ["*"]
    # The 2-minute check asks Wassenger about each number: not what is measured here.
    from messaging import wassenger

    wassenger.device_states = lambda: []
    wassenger.list_webhooks = lambda: []


def _serve_timings() -> None:
    """The child's side: the targets' names, then one time (seconds) for each name asked."""
    _django()
    targets = _targets()
    print(json.dumps(list(targets)), flush=True)
    for line in sys.stdin:
        run = targets[line.strip()]
        started = time.perf_counter()
        run()
        print(time.perf_counter() - started, flush=True)


def _targets() -> dict:
    """What is timed: name → a callable doing it once."""
    return {**_pages(), **_jobs()}


def _pages() -> dict:
    from django.contrib.auth import get_user_model
    from django.test import Client

    from campaigns.models import Campaign, Contact

    user, _ = get_user_model().objects.get_or_create(username="bench", defaults={"is_staff": True})
    user.is_superuser = user.is_staff = True
    user.save()
    client = Client()
    client.force_login(user)
    sending = Campaign.objects.filter(status="sending").order_by("pk").first().pk
    contact = Contact.objects.filter(messages__campaign_id=sending).order_by("pk").first().pk
    paths = {
        "page: dashboard": "/",
        "live: dashboard": "/live/",
        "page: campaigns": "/campaigns/",
        "page: campaign (sending)": f"/campaigns/{sending}/",
        "live: campaign (sending)": f"/campaigns/{sending}/live/",
        "page: contacts": "/contacts/",
        "page: contact": f"/contacts/{contact}/",
        "page: replies": "/replies/",
        "live: replies": "/replies/live/",
        "/health/": "/health/",
        "admin: messages": "/admin/messaging/message/",
        "admin: messages, failed": "/admin/messaging/message/?status__exact=failed",
        "admin: contacts": "/admin/campaigns/contact/",
        "admin: campaigns": "/admin/campaigns/campaign/",
        "admin: webhook events": "/admin/webhooks/webhookevent/",
        "admin: inbound messages": "/admin/webhooks/inboundmessage/",
        "api: messages": "/api/messages/",
        "api: contacts": "/api/contacts/",
        "api: campaigns": "/api/campaigns/",
        "api: replies": "/api/replies/",
        "api: daily stats": "/api/stats/daily/",
    }
    return {name: _getter(client, path) for name, path in paths.items()}


def _getter(client, path: str):
    def get() -> None:
        response = client.get(path)
        if response.status_code not in (200, 503):  # /health/ may say unhealthy: still measured
            raise RuntimeError(f"GET {path}: {response.status_code}")
        if getattr(response, "streaming", False):
            for _ in response.streaming_content:
                pass

    return get


def _jobs() -> dict:
    from messaging.dispatch import dispatch_run
    from monitoring.checks import daily_rollover_run, health_check_run
    from webhooks.processing import events_sweep, windows_expire

    jobs = {
        "job: dispatcher tick": dispatch_run,
        "job: expire windows": windows_expire,
        "job: health check": health_check_run,
        "job: daily rollover": daily_rollover_run,
        "job: webhook sweep": events_sweep,
        "job: cleanup (a batch of each kind)": _cleanup_steady,
        "claim on a device with a paused campaign": _claim_once,
        "sender loop: free devices with work (every second)": _free_devices,
    }
    return {name: _rolled_back(job) for name, job in jobs.items()}


def _rolled_back(job):
    """The job once, in a transaction undone afterwards: every run sees the seeded data."""
    from django.db import transaction

    def run() -> None:
        with transaction.atomic():
            job()
            transaction.set_rollback(True)

    return run


# What a 10-minute cleanup run finds once retention has caught up, at scale 1: about 115
# webhook events, 57 attempts and a task result, so batches of 100 (both databases fill them).
STEADY_BATCH = 100


def _cleanup_steady() -> None:
    """A cleanup run once retention has caught up: one batch of each kind. (The seeded year is
    a backlog of nine months, which the first runs after an upgrade work off within budget;
    what is timed here is what every later run costs.)"""
    from django.conf import settings

    from messaging.retention import retention_run
    from messaging.sending import leases_release_expired

    batch, settings.RETENTION_BATCH = settings.RETENTION_BATCH, STEADY_BATCH
    try:
        leases_release_expired()
        retention_run(budget_seconds=0)
    finally:
        settings.RETENTION_BATCH = batch


def _free_devices() -> None:
    from config import clock
    from messaging.loop import _COUNT_FREE_SQL, _rows

    if not _rows(_COUNT_FREE_SQL, now=clock.now(), parked=[], only=None)[0]:
        raise RuntimeError("no device has work")


def _claim_once() -> None:
    """The next due message of the sending campaign whose device also holds a paused
    campaign's pending Message 1s, all of them earlier in the claim's order."""
    from config import clock
    from messaging.claims import device_snapshot, message_claim
    from messaging.models import MessageKind

    device_id = scale_seed.PAUSED[0] - 289
    now = clock.now()
    claim = message_claim(
        device=device_snapshot(device_id, now), kinds=(MessageKind.MESSAGE_2, MessageKind.MESSAGE_1), now=now
    )
    if claim is None or claim.campaign_id not in scale_seed.SENDING:
        raise RuntimeError(f"the claim found {claim}")


# --- The CSV export, in a child of its own (its peak RSS is the export's) ----------------------


def _csv_export() -> dict:
    import resource

    _django()
    from django.contrib.auth import get_user_model
    from django.test import Client

    client = Client()
    client.force_login(get_user_model().objects.get(username="bench"))
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    response = client.get(f"/campaigns/{scale_seed.CSV_CAMPAIGN}/timeline.csv")
    lines = sum(chunk.count(b"\n") for chunk in response.streaming_content)
    seconds = time.perf_counter() - started
    return {
        "rows": lines - 1,
        "seconds": round(seconds, 2),
        "rows_per_second": round((lines - 1) / seconds, 1),
        "rss_before_mb": round(rss_before, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


# --- The one JSON line -----------------------------------------------------------------------------


def _report(options, timings: dict, csv: dict) -> None:
    details = {}
    for name, large in timings["large"].items():
        small = timings["small"][name]
        ratio = small["median_ms"] / large["median_ms"] if large["median_ms"] else float("inf")
        details[name] = {
            "small_median_ms": small["median_ms"],
            "small_p95_ms": small["p95_ms"],
            "large_median_ms": large["median_ms"],
            "large_p95_ms": large["p95_ms"],
            "ratio": round(ratio, 3),
        }
    worst_name = min(details, key=lambda name: details[name]["ratio"])
    worst = details[worst_name]
    sizes = scale_seed.sizes(options.scale)
    harness.report(
        name="at_scale",
        unit="ms",
        value=worst["small_median_ms"],
        baseline=worst["large_median_ms"],
        goal=RATIO_GOAL,
        measured=f"median time of the slowest-growing of {len(details)} pages, endpoints and jobs "
        f"({worst_name}) on a week of data (1/{SMALL_FACTOR}), {options.runs} runs",
        baseline_is=f"the same on a year of data ({sizes['message_1']:,} Message 1s, {sizes['events']:,} "
        "webhook events)",
        also={
            f"CSV export peak RSS < {RSS_GOAL_MB} MB ({csv['peak_rss_mb']:.0f} MB)": csv["peak_rss_mb"]
            < RSS_GOAL_MB
        },
        scale=options.scale,
        worst=worst_name,
        csv_export=csv,
        each=details,
    )


if __name__ == "__main__":
    main()
