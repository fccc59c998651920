"""django-q2's task row, built without `async_task`: the one place that knows its format.

The webhook store (webhooks/ingest.py) writes each new event and its processing task in
one SQL statement, so that a task exists if and only if its event was committed, at the
cost of one round trip. That needs the row django-q2's ORM broker would write, as values
for the statement: the queue's table, its key (the cluster's name), a lock that makes the
task ready at once, and the signed package `async_task` would have made. `async_task`
itself is not called because it also makes a human-readable id, sends a signal and logs
an "Enqueued" line per task: half of the package's cost on the webhook's hot path.

It lives in config/, beside the prepared statements (config/prepared.py) and the
clock, because it belongs to no app: it is django-q2's wire format, which any app writing
tasks inside its own SQL would need, and an upgrade of django-q2 is checked here once.
tests/webhooks/test_queue_contract.py holds it to django-q2's own `async_task`, broker
and worker: same row, same package, and a cluster runs it.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from django.utils import timezone
from django_q.conf import Conf
from django_q.models import OrmQ
from django_q.signing import SignedPackage


def tasks_in_statement() -> bool:
    """Whether tasks can be written as rows in our own statement: only with django-q2's
    ORM broker, and not in sync mode (tests), where `async_task` runs a task the moment it
    is made and must therefore be called once the data it reads is committed."""
    return bool(Conf.ORM) and not Conf.SYNC


def task_queue_table() -> str:
    return OrmQ._meta.db_table


def task_queue_key(*, cluster: str) -> str:
    """The `key` column of a task for `cluster`: the ORM broker's queue is the cluster's name."""
    return cluster


def task_ready_at() -> datetime:
    """The `lock` column of a new task: the broker hands out rows whose lock has passed.

    django-q2's own time, not config.clock: a test clock must not hide tasks from a cluster.
    """
    return timezone.now()


def task_package(*, func: str, args: tuple, name: str, cluster: str) -> str:
    """The signed package `async_task(func, *args, task_name=name, cluster=cluster)` makes."""
    task = {"id": uuid.uuid4().hex, "name": name, "func": func, "args": args, "cluster": cluster}
    if Conf.CACHED:
        task["cached"] = Conf.CACHED
    if Conf.ACK_FAILURES:
        task["ack_failure"] = Conf.ACK_FAILURES
    task.update(kwargs={}, started=timezone.now())
    return SignedPackage.dumps(task)
