"""Fixtures for the Wassenger client and sandbox: a real sandbox process, a webhook receiver.

The sandbox runs as `manage.py wassenger_sandbox --port 0` (the system picks a free
port, the command prints it) and is stopped by its pid at the end.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from messaging.wassenger.sandbox.state import EXCLUSIVE_FAULTS

BASE_DIR = Path(__file__).resolve().parents[2]
# Distinctive, so that a leak into a log line or an error message cannot go unnoticed.
SANDBOX_TOKEN = "tok-Zq8Vw2-never-print-me-5ecr3t"
STARTUP_SECONDS = 30
SLOW_SECONDS = 3.0  # the sandbox's slow answers; the client's read timeout is below it


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.02) -> Any:
    """Poll until `predicate()` is truthy and return it; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            assert value, f"still false after {timeout} s: {predicate}"
            return value
        time.sleep(interval)


@dataclass
class SandboxProcess:
    process: subprocess.Popen
    url: str
    stderr_path: Path

    def control(self, method: str, path: str, body: Any = None, params: dict | None = None) -> Any:
        response = requests.request(method, f"{self.url}/sandbox/{path}", json=body, params=params, timeout=5)
        response.raise_for_status()
        return response.json()

    def messages(self, **filters: str) -> list[dict]:
        return self.control("GET", "messages", params=filters)

    def set_faults(self, **shares: float) -> dict:
        return self.control("POST", "faults", shares)

    def stop(self) -> int | None:
        """SIGTERM, as the run supervisor does; the exit code, or None if it had to be killed."""
        code = self.process.poll()
        if code is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                code = self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process.stdout.close()
        self.stderr_path.unlink(missing_ok=True)
        return code


def start_sandbox(*flags: str) -> SandboxProcess:
    """Start `manage.py wassenger_sandbox` on a free loopback port; return once it listens."""
    stderr_path = Path(tempfile.mkstemp(prefix="sandbox-", suffix=".log")[1])
    with stderr_path.open("w") as stderr:
        process = subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "wassenger_sandbox",
                "--port",
                "0",
                "--token",
                SANDBOX_TOKEN,
                *flags,
            ],
            cwd=BASE_DIR,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    ready, _, _ = select.select([process.stdout], [], [], STARTUP_SECONDS)
    line = process.stdout.readline() if ready else ""
    if "http://" not in line:
        process.kill()
        raise RuntimeError(f"the sandbox did not start: {line!r}\n{stderr_path.read_text()}")
    url = line.split(" on ", 1)[1].split("/v1", 1)[0]
    return SandboxProcess(process, url, stderr_path)


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[SandboxProcess]:
    """One sandbox for the client tests: no webhooks, short slow answers."""
    server = start_sandbox("--webhook-url", "", "--slow-seconds", str(SLOW_SECONDS), "--seed", "7")
    yield server
    assert server.stop() == 0, "the sandbox did not stop cleanly on SIGTERM"


def _point_client_at(server: SandboxProcess, settings) -> SandboxProcess:
    """Empty the sandbox, switch its faults off, and point the client at it."""
    server.control("DELETE", "messages")
    server.set_faults(**dict.fromkeys(EXCLUSIVE_FAULTS, 0), rate_limit_retry_after=0.5)
    settings.WASSENGER_API_URL = f"{server.url}/v1"
    settings.WASSENGER_API_TOKEN = SANDBOX_TOKEN
    settings.WASSENGER_CONNECT_TIMEOUT = 2.0
    settings.WASSENGER_READ_TIMEOUT = 1.0
    return server


@pytest.fixture
def sandbox(sandbox_server: SandboxProcess, settings) -> SandboxProcess:
    return _point_client_at(sandbox_server, settings)


@dataclass
class WebhookReceiver:
    """A stand-in for Relance's webhook endpoint: records every POST, can refuse the first ones."""

    url: str = ""
    received: list[Any] = field(default_factory=list)
    refuse_first: int = 0  # answer 500 to this many requests before accepting
    refused: int = 0
    queries: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def events(self, name: str) -> list[dict]:
        """Every event called `name`, Format B arrays flattened."""
        with self.lock:
            items = [i for e in self.received for i in (e if isinstance(e, list) else [e])]
        return [i for i in items if i.get("event") == name]

    def reset(self) -> WebhookReceiver:
        with self.lock:
            self.received.clear()
            self.queries.clear()
            self.refuse_first = self.refused = 0
        return self

    def take(self, body: bytes, query: str) -> int:
        with self.lock:
            if self.refused < self.refuse_first:
                self.refused += 1
                return 500
            self.received.append(json.loads(body))
            self.queries.append(query)
            return 200


@pytest.fixture(scope="session")
def webhook_receiver_server() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(receiver.take(body, self.path.partition("?")[2]))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/webhooks/wassenger/?secret=s3cret"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield receiver
    server.shutdown()
    server.server_close()


@pytest.fixture
def webhook_receiver(webhook_receiver_server: WebhookReceiver) -> WebhookReceiver:
    return webhook_receiver_server.reset()


# Tiny delays so that a whole message life (delivered, read, reply) takes a fraction of a second.
WEBHOOK_SEED = 11
WEBHOOK_SHARES = {"reply_share": 0.5, "stop_share": 0.5}


@pytest.fixture(scope="session")
def webhook_sandbox_server(webhook_receiver_server: WebhookReceiver) -> Iterator[SandboxProcess]:
    server = start_sandbox(
        "--webhook-url", webhook_receiver_server.url,
        "--seed", str(WEBHOOK_SEED),
        "--sent-delay", "0.05", "--delivered-delay", "0.05", "--read-delay", "0.05", "--reply-delay", "0.05",
        "--reply-share", str(WEBHOOK_SHARES["reply_share"]),
        "--stop-share", str(WEBHOOK_SHARES["stop_share"]),
        "--webhook-retries", "3", "--webhook-backoff", "0.05",
    )  # fmt: skip
    yield server
    assert server.stop() == 0, "the sandbox did not stop cleanly on SIGTERM"


@pytest.fixture
def webhook_sandbox(webhook_sandbox_server: SandboxProcess, webhook_receiver: WebhookReceiver, settings):
    """A sandbox that calls `webhook_receiver` back within a fraction of a second."""
    return _point_client_at(webhook_sandbox_server, settings)
