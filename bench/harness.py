"""Plumbing shared by the benchmarks: a scratch database, processes on loopback, JSON out.

A benchmark runs on its own: it creates a database of its own on the configured server
(the embedded PostgreSQL unless DATABASE_URL is set), migrates it, runs, and drops it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))


def server_entry() -> dict:
    """The PostgreSQL server the benchmarks use: DATABASE_URL's, else the embedded one."""
    if os.environ.get("DATABASE_URL"):
        import environ

        return environ.Env.db_url_config(os.environ["DATABASE_URL"])
    from config.embedded_pg import ensure_running

    return ensure_running()


# The throughput benches compare sends with a schedule of the legacy rules: their devices send at
# any hour, in the legacy rhythm, with no warm-up (bench/pacing_simulation.py measures those rules).
LEGACY_PACING = {
    "DEVICE_SEND_WINDOW": "always",
    "DEVICE_GAP_JITTER": "0",
    "DEVICE_BATCH_JITTER": "0",
    "DEVICE_WARMUP": "",
    "DEVICE_PAUSE_ON_TROUBLE": "false",
}


@contextlib.contextmanager
def scratch_django(name: str, **settings_env: str):
    """Set up Django on a fresh database `relance_bench_<name>`; drop it afterwards."""
    import psycopg

    from config.embedded_pg import url_for

    entry = server_entry()
    database = f"relance_bench_{name}_{os.getpid()}"
    admin_url = url_for(entry, "postgres")
    with psycopg.connect(_libpq(admin_url), autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{database}"')
    os.environ.update(DATABASE_URL=url_for(entry, database), DJANGO_SETTINGS_MODULE="config.settings")
    os.environ.update({**LEGACY_PACING, **settings_env})
    try:
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", verbosity=0)
        yield os.environ["DATABASE_URL"]
    finally:
        _drop(admin_url, database)


def _drop(admin_url: str, database: str) -> None:
    import psycopg
    from django.db import connections

    connections.close_all()
    with psycopg.connect(_libpq(admin_url), autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def _libpq(url: str) -> str:
    # psycopg reads postgres:// URLs itself, including ?host=/socket/dir.
    return url.replace("postgres://", "postgresql://", 1)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(argv: list[str], **env: str) -> subprocess.Popen:
    """A child process in its own group, quiet unless BENCH_VERBOSE is set."""
    output = None if os.environ.get("BENCH_VERBOSE") else subprocess.DEVNULL
    return subprocess.Popen(
        argv, cwd=BASE_DIR, env={**os.environ, **env}, stdout=output, stderr=output, start_new_session=True
    )


def stop(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def wait_for_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port}")


def report(
    *,
    name: str,
    unit: str,
    value: float,
    baseline: float,
    goal: float,
    measured: str,
    baseline_is: str,
    also: dict[str, bool] | None = None,
    **details,
) -> dict:
    """Print the benchmark's one JSON line; ratio is always ours over the baseline.

    `measured` and `baseline_is` say in words what was timed (bench/results.md shows them);
    `also` holds the goals besides the ratio, as {"what, with the value": met}.
    """
    ratio = value / baseline if baseline else float("inf")
    result = {
        "name": name,
        "unit": unit,
        "value": round(value, 1),
        "baseline": round(baseline, 1),
        "ratio": round(ratio, 3),
        "goal": f">= {goal}",
        "met": ratio >= goal,
        "measured": measured,
        "baseline_is": baseline_is,
        "also": also or {},
        "details": details,
    }
    print(json.dumps(result))
    return result
