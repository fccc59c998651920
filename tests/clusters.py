"""A real django-q cluster for end-to-end tests: on the test database, in its own group."""

import os
import signal
import subprocess
import sys
from contextlib import suppress
from pathlib import Path

from django.db import connection

from config.embedded_pg import url_for

BASE_DIR = Path(__file__).resolve().parent.parent


def qcluster_start(
    *, name: str | None = None, sandbox_url: str | None = None, **env: str
) -> subprocess.Popen:
    """`manage.py qcluster` (the default cluster, or `name`), pointed at the sandbox if given."""
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
    return subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
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
