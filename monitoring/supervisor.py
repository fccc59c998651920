"""Run Relance's processes together (web, django-q clusters, sender loop, Wassenger sandbox).

Each child runs in its own session (process group), so that after its graceful stop
whatever it forked can be killed too: killing only qcluster's main process would leave
its workers consuming tasks.
A child that dies is restarted after a short back-off; Ctrl-C or SIGTERM stops them all,
those marked `stop_first` (the senders) before the others: a sender finishes its send in
flight against a Wassenger (the sandbox) that still answers.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

STOP_GRACE_SECONDS = 15
RESTART_BACKOFF_SECONDS = (1, 2, 5, 10, 30)


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    stop_first: bool = False  # stopped, and waited for, before the other children
    process: subprocess.Popen | None = None
    restarts: int = 0
    started_at: float = field(default=0.0)

    def start(self) -> None:
        self.process = subprocess.Popen(self.argv, env={**os.environ, **self.env}, start_new_session=True)
        self.started_at = time.monotonic()
        logger.info("started %s (pid %s)", self.name, self.process.pid)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal_group(self, signum: int) -> None:
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signum)
        except ProcessLookupError:
            pass


def manage_py(*args: str) -> list[str]:
    return [sys.executable, "manage.py", *args]


class Supervisor:
    def __init__(self, children: list[Child]):
        self.children = children
        self.stopping = False

    def run(self) -> None:
        signal.signal(signal.SIGINT, self._request_stop)
        signal.signal(signal.SIGTERM, self._request_stop)
        for child in self.children:
            child.start()
        while not self.stopping:
            self._restart_dead_children()
            time.sleep(0.5)
        self.stop_all()

    def _request_stop(self, *_):
        self.stopping = True

    def _restart_dead_children(self) -> None:
        for child in self.children:
            if child.running():
                continue
            # A child that ran for a while before dying starts its back-off afresh.
            if time.monotonic() - child.started_at > 60:
                child.restarts = 0
            delay = RESTART_BACKOFF_SECONDS[min(child.restarts, len(RESTART_BACKOFF_SECONDS) - 1)]
            logger.warning(
                "%s exited with %s; restarting in %ss", child.name, child.process.returncode, delay
            )
            # What it forked may outlive it (a SIGKILLed qcluster leaves its workers taking
            # tasks): they go with it, or two clusters would share the queue.
            child.signal_group(signal.SIGKILL)
            if not self._wait(delay):
                return
            child.restarts += 1
            child.start()

    def _wait(self, seconds: float) -> bool:
        """Sleep, but wake for Ctrl-C; False when a stop was asked meanwhile."""
        deadline = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < deadline:
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
        return not self.stopping

    def stop_all(self) -> None:
        """Stop the `stop_first` children, then the others (see `_stop`)."""
        self._stop([c for c in self.children if c.stop_first])
        self._stop([c for c in self.children if not c.stop_first])
        logger.info("all processes stopped")

    def _stop(self, children: list[Child]) -> None:
        """SIGTERM each main process, wait, then SIGKILL whatever is left of its group.

        Only the main process gets SIGTERM: qcluster's sentinel then stops its own workers
        in order (a group-wide SIGTERM makes it hang until the grace period runs out).
        """
        for child in children:
            if child.running():
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for child in children:
            if child.process is None:
                continue
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.warning("%s did not stop in %ss; killing it", child.name, STOP_GRACE_SECONDS)
            # Workers forked by the child may outlive it: kill the whole group regardless.
            child.signal_group(signal.SIGKILL)
