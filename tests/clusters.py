"""A real django-q cluster for end-to-end tests: on the test database, in its own group."""

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from contextlib import suppress
from pathlib import Path

from django.db import connection

from config.embedded_pg import url_for

BASE_DIR = Path(__file__).resolve().parent.parent
SENDERS = "senders"


def qcluster_start(
    *, name: str | None = None, sandbox_url: str | None = None, **env: str
) -> subprocess.Popen:
    """`manage.py qcluster` (the default cluster, or `name`), pointed at the sandbox if given.

    The senders are no django-q cluster but a process of their own: `name="senders"` starts
    `manage.py run_senders` (a sender loop), so that a test can treat it like the others."""
    environment = {**os.environ, "DATABASE_URL": url_for(connection.settings_dict), "LOG_LEVEL": "WARNING"}
    environment.pop("Q_CLUSTER_NAME", None)
    if name:
        environment["Q_CLUSTER_NAME"] = name
    if sandbox_url:
        from tests.messaging.conftest import SANDBOX_TOKEN

        environment.update(
            WASSENGER_SANDBOX="false",
            WASSENGER_API_URL=f"{sandbox_url}/v1",
            WASSENGER_API_TOKEN=SANDBOX_TOKEN,
        )
    environment.update(env)
    command = "run_senders" if name == SENDERS else "qcluster"
    if name == SENDERS:
        environment.pop("Q_CLUSTER_NAME")
    return subprocess.Popen(
        [sys.executable, "manage.py", command],
        cwd=BASE_DIR,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def qcluster_kill(process: subprocess.Popen) -> None:
    """SIGKILL the whole group: the main process and every worker, mid-task."""
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


# --- Driving a senders' cluster through a whole campaign ------------------------------------

# Every wait of the send engine, shrunk for end-to-end tests: the same rules on a faster clock.
SHRUNK = {
    "RETRY_BASE_SECONDS": "0.2",
    "RATE_LIMIT_MIN_WAIT_SECONDS": "0.2",
    "SENDER_LEASE_SECONDS": "2",
    "RECONCILE_AFTER_SECONDS": "0.3",
    "WASSENGER_READ_TIMEOUT": "2",
    "WASSENGER_CONNECT_TIMEOUT": "2",
    "DEVICE_BREAKER_BASE_SECONDS": "0.2",
    "DEVICE_BREAKER_MAX_SECONDS": "2",
    "DEVICE_UNREACHABLE_INCIDENT_SECONDS": "2",
    "SENDER_LOOP_POLL_SECONDS": "0.2",
}
OPEN = ("pending", "sending", "unknown")
TICK_SECONDS = 0.3


def settings_shrink(settings, **overrides: str) -> dict[str, str]:
    """Apply SHRUNK (and `overrides`) to this process's settings; the env for a cluster."""
    shrunk = {**SHRUNK, **overrides}
    for name, value in shrunk.items():
        setattr(settings, name, float(value))
    return shrunk


class SenderCluster:
    """A sender loop process (`manage.py run_senders`) on the sandbox, which a test kills,
    stops and restarts."""

    def __init__(self, sandbox_url: str, **env: str):
        self.sandbox_url, self.env, self.process = sandbox_url, env, None

    def start(self) -> None:
        self.process = qcluster_start(name=SENDERS, sandbox_url=self.sandbox_url, **self.env)

    def stop(self, signum: int = signal.SIGTERM) -> float:
        """Stop it as systemd or Ctrl-C does; the seconds it took to exit."""
        started = time.monotonic()
        self.process.send_signal(signum)
        self.process.wait(timeout=30)
        return time.monotonic() - started

    def kill(self) -> None:
        qcluster_kill(self.process)

    def kill_mid_send(self, sandbox) -> None:
        """SIGKILL the cluster while a send hangs after the sandbox recorded it (its answer
        lost with the worker, the worst case for a duplicate), then start it again."""
        from tests.messaging.conftest import wait_for

        hung = sandbox.control("GET", "stats")["accepted_with_fault"].get("slow", 0)
        sandbox.set_faults(slow=1, slow_seconds=30)
        wait_for(lambda: sandbox.control("GET", "stats")["accepted_with_fault"].get("slow", 0) > hung, 10)
        self.kill()
        sandbox.set_faults(slow=0)
        self.start()


def run_until_settled(sandbox, cluster, *, kill_at=(), deadline_seconds=150, settled=None) -> None:
    """Tick the one-minute dispatcher every TICK_SECONDS (same function, faster clock) until
    `settled()` (default: no message open); SIGKILL the cluster mid-send and restart it once
    the sandbox has accepted each count of `kill_at`."""
    from messaging.dispatch import dispatch_run
    from messaging.models import Message

    settled = settled or (lambda: not Message.objects.filter(status__in=OPEN).exists())
    kills = list(kill_at)
    deadline = time.monotonic() + deadline_seconds
    while not settled():
        assert time.monotonic() < deadline, Counter(Message.objects.values_list("status", flat=True))
        if kills and sandbox.control("GET", "stats")["messages"] >= kills[0]:
            kills.pop(0)
            cluster.kill_mid_send(sandbox)
        dispatch_run()
        time.sleep(TICK_SECONDS)
    assert kills == [], "the run ended before every planned kill"


# --- The whole application, as `make run` starts it --------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def runall_start(*, addr: str, log: Path, **env: str) -> subprocess.Popen:
    """`manage.py runall`: migrate, then web, clusters and (unless told otherwise) the sandbox,
    under the supervisor that restarts what dies. Output goes to `log`."""
    return _start([sys.executable, "manage.py", "runall", "--addr", addr], log, env)


def gunicorn_start(*, addr: str, log: Path, **env: str) -> subprocess.Popen:
    """The production web server (deploy/Procfile), two sync workers: each keeps its
    database connection from one request to the next (CONN_MAX_AGE)."""
    argv = [str(Path(sys.executable).parent / "gunicorn"), "config.wsgi", "--bind", addr, "--workers", "2"]
    return _start([*argv, "--timeout", "30"], log, env)


def _start(argv: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    environment = {**os.environ, "LOG_LEVEL": "WARNING", **env}
    environment.pop("Q_CLUSTER_NAME", None)
    with log.open("ab") as output:
        return subprocess.Popen(
            argv,
            cwd=BASE_DIR,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def process_tree_kill(process: subprocess.Popen) -> None:
    """SIGKILL a supervisor and each child's group (each child runs in its own session):
    the supervisor first, so that it restarts nothing."""
    listed = subprocess.run(["ps", "-o", "pid=", "--ppid", str(process.pid)], capture_output=True, text=True)
    qcluster_kill(process)
    for child in map(int, listed.stdout.split()):
        with suppress(ProcessLookupError):
            os.killpg(child, signal.SIGKILL)


# --- Sender wake-ups ---------------------------------------------------------------------------


class WakeListener:
    """LISTENs to the sender loops' wake-ups (messaging.dispatch.senders_wake), from any process."""

    def __init__(self):
        import psycopg

        from messaging.dispatch import WAKE_CHANNEL

        url = url_for(connection.settings_dict).replace("postgres://", "postgresql://", 1)
        self.connection = psycopg.connect(url, autocommit=True)
        self.connection.execute(f"LISTEN {WAKE_CHANNEL}")
        self.received: list[int] = []

    def devices(self) -> list[int]:
        """Every device woken so far, in order (waits a moment for the last ones)."""
        self.received += [int(n.payload) for n in self.connection.notifies(timeout=0.3)]
        return list(self.received)

    def clear(self) -> None:
        self.devices()
        self.received.clear()

    def close(self) -> None:
        self.connection.close()
