"""Two commands started at the same moment on a fresh checkout both get the database."""

import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from config import embedded_pg

ROOT = Path(__file__).resolve().parent.parent

# One `manage.py`-like process: start the embedded server for a data directory, as settings do.
START = """
import sys
from pathlib import Path
import config.embedded_pg as pg
pg.PGDATA = Path(sys.argv[1])
entry = pg.ensure_running()
print("ready", entry["NAME"])
"""


@pytest.fixture
def fresh_pgdata(monkeypatch):
    # Short path: a unix socket lives inside it (the limit is about 100 characters).
    pgdata = Path(tempfile.mkdtemp(prefix="pg-", dir="/tmp")) / "pgdata"
    monkeypatch.setattr(embedded_pg, "PGDATA", pgdata)
    yield pgdata
    embedded_pg.stop()


def test_two_commands_starting_together_on_a_fresh_checkout_both_work(fresh_pgdata):
    starts = [
        subprocess.Popen(
            [sys.executable, "-c", START, str(fresh_pgdata)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outcomes = [start.communicate(timeout=120) for start in starts]

    assert [start.returncode for start in starts] == [0, 0], [err for _, err in outcomes]
    assert all(out.strip() == f"ready {embedded_pg.DATABASE_NAME}" for out, _ in outcomes)
    assert embedded_pg.is_running()
