"""Webhook events accepted per second by POST /webhooks/wassenger/ vs. the durable ceiling.

gunicorn serves Relance on loopback with two more URLs through the same Django stack:
/bench/durable/ reads the body and commits one empty row (an autocommit INSERT, as durable
as ours) before answering, the ceiling of any endpoint that keeps each event before its
200; /bench/bare/ only reads the body and answers 200, the limit of the server. A load
generator (processes of threads, one connection per request, as Wassenger's deliveries
are) posts the same number of distinct events to each, in Format A, one event a request.
Every accepted event must be stored: lost = accepted − stored rows, and each stored event
must have its processing task enqueued. No cluster runs, so that ingest alone is timed.

Goal: ratio = `of_ceiling` (ours over the durable endpoint, measured in the same run) >= 0.8,
zero lost. What no endpoint that stores first can reach is not the goal: the bare endpoint's
rate is printed as information (`of_bare` = ours over bare, `ceiling_ratio` = durable over
bare, the price of one commit per delivery on this machine).

    python bench/webhook_ingest.py [--events 4000] [--clients 16] [--workers 4] [--threads 1]

This file is also the gunicorn app (`webhook_ingest:application`), so that the bare
endpoint exists only while the benchmark runs.
"""

import argparse
import http.client
import json
import multiprocessing
import os
import secrets
import sys
import threading
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness

SECRET = "bench-webhook-" + "s" * 32
TIME_LIMIT_SECONDS = 60  # per measured run; the generator stops there whatever is left
ROUNDS = 4
GENERATOR_PROCESSES = 2
PATHS = {"bare": "/bench/bare/", "ours": "/webhooks/wassenger/", "durable": "/bench/durable/"}
DURABLE_TABLE = "bench_durable_write"
OF_CEILING_GOAL = 0.8


def main() -> None:
    options = _arguments()
    # DEBUG off as in production (with it on, Django keeps every query in memory).
    env = {"WASSENGER_WEBHOOK_SECRET": SECRET, "LOG_LEVEL": "WARNING", "CONN_MAX_AGE": "60", "DEBUG": "false"}
    with harness.scratch_django("webhook_ingest", **env) as database_url:
        port = harness.free_port()
        server = _gunicorn(port, options.workers, options.threads, database_url)
        # Spawned once, up front: their start-up is in no measured run.
        generators = ProcessPoolExecutor(GENERATOR_PROCESSES, mp_context=multiprocessing.get_context("spawn"))
        try:
            harness.wait_for_port(port)
            _create_durable_table()
            load = partial(_load, generators, port, clients=options.clients)
            for path in PATHS.values():  # warm every worker and generator up
                load(path, options.clients * 4)
            before = _rows()
            runs = _alternate(load, options.events)
            bare, ours, durable = runs["bare"], runs["ours"], runs["durable"]
            ceiling = durable["rate"] / bare["rate"]
            details = _check(ours, before)
        finally:
            generators.shutdown()
            harness.stop(server)
    harness.report(
        name="webhook_ingest",
        unit="events/s",
        value=ours["rate"],
        baseline=durable["rate"],
        goal=OF_CEILING_GOAL,
        measured=f"events/s accepted and stored under gunicorn on loopback ({options.workers} workers × "
        f"{options.threads} thread), {options.clients} clients, one connection per event",
        baseline_is="the durable ceiling on the same server (reads the body, commits one INSERT, answers "
        f"200; information: a bare endpoint answers {bare['rate']:,.1f} events/s, ours is "
        f"{ours['rate'] / bare['rate']:.2f} of it)",
        also={f"zero lost ({details['lost']} lost, {details['errors']} errors)": details["lost_met"]},
        events=options.events,
        clients=options.clients,
        gunicorn_workers=options.workers,
        gunicorn_threads=options.threads,
        bare_seconds=round(bare["seconds"], 2),
        seconds=round(ours["seconds"], 2),
        durable_insert_rate=round(durable["rate"], 1),
        bare_rate=round(bare["rate"], 1),
        ceiling_ratio=round(ceiling, 3),
        of_ceiling=round(ours["rate"] / durable["rate"], 3),
        of_bare=round(ours["rate"] / bare["rate"], 3),
        **details,
    )


def _alternate(load, events: int) -> dict[str, dict]:
    """The endpoints in alternating rounds, so that a change in the machine's load
    (another process waking up) weighs on each alike."""
    runs = {name: [] for name in PATHS}
    for _ in range(ROUNDS):
        for name, path in PATHS.items():
            runs[name].append(load(path, events // ROUNDS))
    return {name: _total(rounds) for name, rounds in runs.items()}


def _total(runs: list[dict]) -> dict:
    total = {key: sum(run[key] for run in runs) for key in ("accepted", "stored", "errors", "seconds")}
    return {**total, "rate": total["accepted"] / total["seconds"]}


def _arguments():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=4000)
    parser.add_argument("--clients", type=int, default=16, help="concurrent connections")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=1, help="threads per worker (over 1: gthread)")
    return parser.parse_args()


def _gunicorn(port: int, workers: int, threads: int, database_url: str):
    bench_dir = str(Path(__file__).resolve().parent)
    argv = [sys.executable, "-m", "gunicorn", "webhook_ingest:application", "--pythonpath", bench_dir]
    argv += ["--bind", f"127.0.0.1:{port}", "--workers", str(workers), "--threads", str(threads)]
    argv += ["--backlog", "2048"]
    return harness.start(argv, DATABASE_URL=database_url)


# --- Load generator ---------------------------------------------------------------------


def _load(generators: ProcessPoolExecutor, port: int, path: str, events: int, *, clients: int) -> dict:
    """POST `events` distinct events over `clients` connections at once (threads of the
    generator processes)."""
    n = GENERATOR_PROCESSES
    shares = [events // n + (i < events % n) for i in range(n)]
    started = time.perf_counter()
    parts = list(generators.map(_post_many, [port] * n, [path] * n, [clients // n] * n, shares))
    seconds = time.perf_counter() - started
    total = {key: sum(part[key] for part in parts) for key in ("accepted", "stored", "errors")}
    return {**total, "seconds": seconds, "rate": total["accepted"] / seconds}


def _post_many(port: int, path: str, threads: int, count: int) -> dict:
    counts = {"accepted": 0, "stored": 0, "errors": 0}
    lock, remaining = threading.Lock(), [count]
    deadline = time.monotonic() + TIME_LIMIT_SECONDS

    def take() -> bool:
        with lock:
            remaining[0] -= 1
            return remaining[0] >= 0 and time.monotonic() < deadline

    def worker() -> None:
        while take():
            outcome = _post_one(port, path)
            with lock:
                for key, value in outcome.items():
                    counts[key] += value

    pool = [threading.Thread(target=worker) for _ in range(max(1, threads))]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return counts


def _post_one(port: int, path: str) -> dict:
    body = json.dumps(_event()).encode()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("POST", f"{path}?secret={SECRET}", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        answer = response.read()
    except OSError:
        return {"errors": 1}
    finally:
        connection.close()
    if response.status != 200:
        return {"errors": 1}
    stored = json.loads(answer).get("stored", 0) if path.startswith("/webhooks/") else 0
    return {"accepted": 1, "stored": stored}


def _event() -> dict:
    """A distinct Format A receipt, as the sandbox sends them."""
    wa_id = "3EB0" + secrets.token_hex(8).upper()
    data = {
        "id": wa_id,
        "type": "text",
        "flow": "outbound",
        "ack": "delivered",
        "fromNumber": "+33700000000",
        "toNumber": "+33612345678",
        "body": "Bonjour",
        "reference": str(uuid.uuid4()),
        "events": {"sent": {"date": "2026-03-29T09:00:00.000Z"}},
        "meta": {"isGroup": False},
    }
    envelope = {"id": wa_id, "object": "message", "event": "message:out:ack", "created": int(time.time())}
    return {**envelope, "device": {"id": "5f0c0ffee0ddba11ab1e5eed"}, "ack": "delivered", "data": data}


def _rows() -> dict:
    from django_q.models import OrmQ

    from webhooks.models import WebhookEvent

    return {"stored": WebhookEvent.objects.count(), "enqueued": OrmQ.objects.count()}


def _create_durable_table() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE {DURABLE_TABLE} (id bigserial PRIMARY KEY)")


def _check(ours: dict, before: dict) -> dict:
    """Every accepted event stored once, and its processing enqueued."""
    after = _rows()
    stored, enqueued = after["stored"] - before["stored"], after["enqueued"] - before["enqueued"]
    lost = ours["accepted"] - stored
    return {
        "accepted": ours["accepted"],
        "stored": stored,
        "enqueued": enqueued,
        "errors": ours["errors"],
        "lost": lost,
        "lost_met": lost == 0 and ours["errors"] == 0 and enqueued == stored,
    }


# --- The gunicorn app: Relance plus the two reference endpoints -------------------------------

urlpatterns = []
_application = None


def application(environ, start_response):
    global _application
    if _application is None:
        _application = _build()
    return _application(environ, start_response)


def _build():
    """Relance's WSGI app with this module as URLconf: the reference endpoints in front of
    Relance's URLs."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    sys.path.insert(0, str(harness.BASE_DIR))
    from django.conf import settings
    from django.core.wsgi import get_wsgi_application
    from django.db import connection

    settings.ROOT_URLCONF = __name__
    app = get_wsgi_application()
    from django.http import JsonResponse
    from django.urls import include, path
    from django.views.decorators.csrf import csrf_exempt

    @csrf_exempt
    def bare(request):
        request.body  # noqa: B018 (read it, as the real endpoint must)
        return JsonResponse({"ok": True})

    @csrf_exempt
    def durable(request):
        request.body  # noqa: B018
        with connection.cursor() as cursor:  # autocommit: committed, and flushed, on return
            cursor.execute(f"INSERT INTO {DURABLE_TABLE} DEFAULT VALUES")
        return JsonResponse({"ok": True})

    urlpatterns[:] = [
        path("bench/bare/", bare),
        path("bench/durable/", durable),
        path("", include("config.urls")),
    ]
    return app


if __name__ == "__main__":
    main()
