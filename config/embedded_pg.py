"""The embedded PostgreSQL server used when DATABASE_URL is unset.

`pgserver` ships a real PostgreSQL 16 in a wheel. Its data lives in `var/pgdata`, it
listens only on a unix socket inside that directory, and it is started on demand by
settings (any `manage.py` command works on a fresh checkout). It is never stopped by
the process that happened to start it (`cleanup_mode=None`): the owner is
`python -m config.embedded_pg run -- CMD`, which the Makefile wraps around `run` and
`test`, and which stops the server after CMD only if it was the one to start it.
That way the app can restart freely while the database keeps its data and stays up.

    python -m config.embedded_pg run -- CMD ...   start if needed, run CMD, stop if we started
    python -m config.embedded_pg start | stop | status
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

BASE_DIR = Path(__file__).resolve().parent.parent
PGDATA = BASE_DIR / "var" / "pgdata"
DATABASE_NAME = "relance"


def _pgserver():
    # platformdirs warns when XDG_RUNTIME_DIR is unset (CI, cron); pgserver only
    # keeps a lock file there, so the fallback under /tmp is fine.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

    return pgserver


def _postmaster():
    """The running server's postmaster info, or None."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pgserver.utils import PostmasterInfo

    try:
        info = PostmasterInfo.read_from_pgdata(PGDATA) if PGDATA.exists() else None
    except Exception:  # postmaster.pid half written: a server is starting, not ready yet
        return None
    return info if info and info.is_running() and info.status == "ready" else None


def is_running() -> bool:
    return _postmaster() is not None


def ensure_running() -> dict:
    """Start the server if needed, create our database, return Django's DATABASES entry.

    Two commands started at the same moment on a fresh checkout (`make run` in one terminal,
    `manage.py shell` in another) would both run initdb or both CREATE DATABASE, and one would
    crash: a lock file next to the data directory lets one start and create while the other
    waits, then finds both done.
    """
    info = _postmaster()
    if info is None or not _database_exists(str(info.socket_dir)):
        with _start_lock():
            info = _postmaster() or _server_start()
            _ensure_database(str(info.socket_dir))
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": DATABASE_NAME,
        "USER": "postgres",
        "HOST": str(info.socket_dir),
    }


@contextmanager
def _start_lock():
    """An exclusive lock between the processes of this checkout, held while starting."""
    PGDATA.parent.mkdir(parents=True, exist_ok=True)
    with open(PGDATA.parent / f"{PGDATA.name}.start.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _server_start():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _pgserver().get_server(PGDATA, cleanup_mode=None).get_postmaster_info()


def url_for(settings_entry: dict, name: str | None = None) -> str:
    """A DATABASE_URL for another process: same server, database `name` (default: same)."""
    host = settings_entry.get("HOST") or settings_entry.get("OPTIONS", {}).get("host", "")
    user, password = quote(settings_entry.get("USER", "")), quote(settings_entry.get("PASSWORD", ""))
    database = name or settings_entry["NAME"]
    if host.startswith("/"):  # a unix socket directory, as libpq takes it
        return f"postgres://{user}@/{database}?host={host}"
    port = settings_entry.get("PORT") or 5432
    return f"postgres://{user}:{password}@{host}:{port}/{database}"


def _database_exists(socket_dir: str) -> bool:
    import psycopg

    with psycopg.connect(host=socket_dir, user="postgres", dbname="postgres", autocommit=True) as c:
        found = c.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE_NAME]).fetchone()
    return found is not None


def _ensure_database(socket_dir: str) -> None:
    import psycopg

    if _database_exists(socket_dir):
        return
    with psycopg.connect(host=socket_dir, user="postgres", dbname="postgres", autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{DATABASE_NAME}"')


def stop() -> None:
    """Stop the server cleanly (a fast shutdown: open sessions are rolled back)."""
    if not is_running():
        return
    from pgserver._commands import pg_ctl

    user = "pgserver" if os.geteuid() == 0 else None
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=PGDATA, user=user)


def _configured_database_url() -> str:
    """DATABASE_URL as settings will see it: the environment's, else the `.env` file's
    (read into the environment as settings reads it, so CMD sees the same)."""
    env_file = BASE_DIR / ".env"
    if env_file.exists():
        import environ

        environ.Env.read_env(env_file)  # never overrides what the environment already says
    return os.environ.get("DATABASE_URL", "")


def run(command: list[str]) -> int:
    """Run `command` with the database up; stop the server afterwards if we started it."""
    embedded = not _configured_database_url()
    started_here = embedded and not is_running()
    if embedded:
        ensure_running()
    child = subprocess.Popen(command)
    # Ctrl-C reaches the whole foreground group: the child handles it, we wait for it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: child.send_signal(signal.SIGTERM))
    code = child.wait()
    if started_here:
        stop()
        print("Embedded PostgreSQL stopped.", file=sys.stderr)
    return code


def main(argv: list[str]) -> int:
    if argv[:1] == ["run"] and "--" in argv:
        return run(argv[argv.index("--") + 1 :])
    if argv == ["start"]:
        print(ensure_running()["HOST"])
        return 0
    if argv == ["stop"]:
        stop()
        return 0
    if argv == ["status"]:
        print("running" if is_running() else "stopped")
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
