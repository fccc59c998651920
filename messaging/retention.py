"""Retention: the records that only explain what happened are kept RETENTION_DAYS, not for ever.

A team sending 3 million messages a year gathers about 9 million webhook events and as many
send attempts. Past RETENTION_DAYS they are removed, oldest first, by the cleanup job: in
batches of RETENTION_BATCH rows, each its own short transaction, so neither the job nor a
webhook arriving meanwhile waits on a long delete; the job stops at its budget and the next
run goes on. django-q's task results (only failures are stored) go after TASK_RESULTS_KEPT.

What stays: every message (with its timestamps and last error, where every figure of the
dashboard, the daily report and the API is counted from), the daily counters, the daily
reports, and each reply (`InboundMessage`: text, contact, campaign, outcome), whose raw event
is detached from it before removal. An event still waiting to be processed is never removed,
nor the attempts of a message still in flight, whose reconciliation reads its last attempt.
"""

import time
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django_q.models import Task

from config import clock
from messaging.models import OPEN_STATUSES, Message, MessageAttempt
from webhooks.models import EventStatus, InboundMessage, WebhookEvent

# Failed task rows (successes are never stored) say what broke last week; older ones nothing.
TASK_RESULTS_KEPT = timedelta(days=7)
# One cleanup run removes batches for at most this long; a backlog (the first run after an
# upgrade, say) is worked off over the next runs, every 10 minutes.
RETENTION_BUDGET_SECONDS = 60.0

_EVENT, _INBOUND = WebhookEvent._meta.db_table, InboundMessage._meta.db_table
_ATTEMPT, _MESSAGE, _TASK = MessageAttempt._meta.db_table, Message._meta.db_table, Task._meta.db_table
_OPEN = ", ".join(f"'{status}'" for status in OPEN_STATUSES)

# The oldest first, through the index on the timestamp: a batch reads what it removes.
_EVENTS_SQL = f"""
WITH doomed AS (
  SELECT id FROM {_EVENT} WHERE received_at < %(cutoff)s AND status <> '{EventStatus.RECEIVED}'
  ORDER BY received_at LIMIT %(batch)s
), detached AS (
  UPDATE {_INBOUND} SET event_id = NULL WHERE event_id IN (SELECT id FROM doomed)
)
DELETE FROM {_EVENT} WHERE id IN (SELECT id FROM doomed)
"""
_ATTEMPTS_SQL = f"""
DELETE FROM {_ATTEMPT} WHERE id IN (
  SELECT a.id FROM {_ATTEMPT} a
  WHERE a.started_at < %(cutoff)s AND NOT EXISTS (
    SELECT 1 FROM {_MESSAGE} m WHERE m.id = a.message_id AND m.status IN ({_OPEN}))
  ORDER BY a.started_at LIMIT %(batch)s)
"""
_TASKS_SQL = f"""
DELETE FROM {_TASK} WHERE id IN (
  SELECT id FROM {_TASK} WHERE stopped < %(cutoff)s ORDER BY stopped LIMIT %(batch)s)
"""


def retention_batch(sql: str, *, cutoff: datetime) -> int:
    """Remove one batch (at most RETENTION_BATCH rows) in its own transaction; how many went."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, {"cutoff": cutoff, "batch": settings.RETENTION_BATCH})
        return cursor.rowcount


def retention_sweep(sql: str, *, cutoff: datetime, deadline: float) -> int:
    """Batches until none is full (nothing older is left) or the deadline (time.monotonic())."""
    removed = 0
    while True:
        batch = retention_batch(sql, cutoff=cutoff)
        removed += batch
        if batch < settings.RETENTION_BATCH or time.monotonic() >= deadline:
            return removed


def retention_run(*, budget_seconds: float = RETENTION_BUDGET_SECONDS) -> dict:
    """Remove what is past retention, within the budget; returns how many rows of each kind."""
    now = clock.now()
    events_cutoff = now - timedelta(days=settings.RETENTION_DAYS)
    deadline = time.monotonic() + budget_seconds
    return {
        "webhook_events_deleted": retention_sweep(_EVENTS_SQL, cutoff=events_cutoff, deadline=deadline),
        "attempts_deleted": retention_sweep(_ATTEMPTS_SQL, cutoff=events_cutoff, deadline=deadline),
        "task_results_deleted": retention_sweep(
            _TASKS_SQL, cutoff=now - TASK_RESULTS_KEPT, deadline=deadline
        ),
    }
