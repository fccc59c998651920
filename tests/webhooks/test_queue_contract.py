"""config/queue.py held to django-q2 itself, so that an upgrade that changes its format fails here.

The webhook store writes its processing tasks by hand, inside its own SQL statement. These
tests compare that row with the one django-q2's `async_task` has its ORM broker write (same
queue, same package once signed and read back), then let django-q2's own broker hand the
stored task out and its worker run it.
"""

from __future__ import annotations

import pytest
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.conf import Conf
from django_q.models import OrmQ
from django_q.signing import SignedPackage
from django_q.tasks import _sync, async_task

from config import queue
from messaging.models import MessageStatus
from tests.webhooks.conftest import ack_event, sent_message_1
from webhooks.ingest import PROCESS_TASK
from webhooks.models import EventStatus, WebhookEvent

pytestmark = pytest.mark.django_db

# What differs between two tasks by design: a fresh id, and when each was made.
OWN_TO_EACH_TASK = ("id", "started")


def without_own_fields(task: dict) -> dict:
    return {key: value for key, value in task.items() if key not in OWN_TO_EACH_TASK}


def async_task_row(*, args: tuple, name: str, cluster: str) -> OrmQ:
    """The row django-q2 itself writes for this task (its ORM broker, sync off)."""
    async_task(PROCESS_TASK, *args, task_name=name, cluster=cluster)
    return OrmQ.objects.get()


@pytest.mark.parametrize(("ack_failures", "cached"), [(False, False), (True, 60)])
def test_the_task_row_is_the_one_async_task_has_the_orm_broker_write(
    monkeypatch, settings, ack_failures, cached
):
    monkeypatch.setattr(Conf, "SYNC", False)
    monkeypatch.setattr(Conf, "ACK_FAILURES", ack_failures)
    monkeypatch.setattr(Conf, "CACHED", cached)
    cluster, args, name = (
        settings.Q_CLUSTER["name"],
        ("message:out:ack|3EB0AA|read",),
        "webhook message:out:ack",
    )
    made_at = timezone.now()
    theirs = async_task_row(args=args, name=name, cluster=cluster)
    ours = SignedPackage.loads(queue.task_package(func=PROCESS_TASK, args=args, name=name, cluster=cluster))
    expected = SignedPackage.loads(theirs.payload)
    assert without_own_fields(ours) == without_own_fields(expected)
    assert (ours["func"], ours["args"], ours["kwargs"], ours["cluster"]) == (PROCESS_TASK, args, {}, cluster)
    assert "group" not in ours and "group" not in expected
    assert len(ours["id"]) == len(expected["id"]) and ours["id"] != expected["id"]
    assert made_at <= ours["started"] and made_at <= expected["started"]
    assert theirs.key == queue.task_queue_key(cluster=cluster) == get_broker(cluster).list_key
    assert made_at <= theirs.lock <= queue.task_ready_at()
    assert queue.task_queue_table() == OrmQ._meta.db_table


def test_in_sync_mode_tasks_wait_for_the_commit_and_with_the_orm_broker_they_do_not(monkeypatch):
    monkeypatch.setattr(Conf, "SYNC", True)
    assert queue.tasks_in_statement() is False
    monkeypatch.setattr(Conf, "SYNC", False)
    assert queue.tasks_in_statement() is bool(Conf.ORM) is True


def test_django_q_hands_out_and_runs_the_task_the_webhook_stored(post, monkeypatch, settings):
    monkeypatch.setattr(Conf, "SYNC", False)  # the real broker path: the task waits in the queue
    message = sent_message_1()
    post(ack_event(message, "read"))
    event = WebhookEvent.objects.get()
    assert event.status == EventStatus.RECEIVED
    # What a cluster's pusher does: take the ready tasks of its queue from the broker.
    [(_, package)] = get_broker(settings.Q_CLUSTER["name"]).dequeue()
    assert SignedPackage.loads(package)["args"] == (event.dedup_key,)
    # django-q2's worker and monitor, in this process (sync keeps the test's transaction).
    monkeypatch.setattr(Conf, "SYNC", True)
    _sync(package)
    event.refresh_from_db()
    message.refresh_from_db()
    assert (event.status, message.status) == (EventStatus.PROCESSED, MessageStatus.READ)
