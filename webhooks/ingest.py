"""Webhook intake: read the body, describe each event, store it once, enqueue processing.

Nothing here acts on an event. It makes sure every event Wassenger posts is kept exactly
once (a redelivery hits the unique `dedup_key` and changes nothing) and that its
processing task is enqueued when, and only if, the row is committed (on the default
cluster; the sweeper in processing.py catches anything left waiting).

Both real formats arrive here (wassenger-api.md): Format A, one event object, and
Format B, an array of up to 25 gateway events; each array item is stored as its own event.
Parsing is lenient: only what processing needs is required, the rest is kept raw. Every
field is read through messaging/wassenger/payloads.py; the task rows come from config/queue.py.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from dataclasses import dataclass
from datetime import datetime
from functools import partial

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction
from django_q.tasks import async_task

from config import clock, queue
from config.prepared import prepared_cursor
from messaging.wassenger import payloads
from webhooks.models import EventStatus, WebhookEvent

logger = logging.getLogger(__name__)

# Column widths of WebhookEvent: a longer value is refused rather than cut (a cut id
# could make two different events look like one).
MAX_EVENT, MAX_ID, MAX_ACK = 64, 128, 32
_REPLACEMENT = "\ufffd"
_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")
# How they can appear in the body's text: as escapes (a false alarm only costs a walk).
_ESCAPED_UNSTORABLE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")


class BodyError(ValueError):
    """The body is not JSON that can be stored; the message says why (answered 400)."""


# --- Reading the body -------------------------------------------------------------------


def body_parse(raw: bytes) -> object:
    """The JSON value of `raw`, made storable in PostgreSQL, or BodyError saying why not."""
    try:
        text = raw.decode("utf-8-sig")  # RFC 8259: JSON between systems is UTF-8
    except UnicodeDecodeError:
        raise BodyError("the body is not UTF-8 text") from None
    if not text.strip():
        raise BodyError("the body is empty")
    try:
        value = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except RecursionError:
        raise BodyError("the JSON is nested too deeply") from None
    except ValueError as error:
        raise BodyError(f"the body is not JSON: {error}") from None
    # jsonb refuses NUL and lone surrogates, and a reply containing one must still be
    # stored and answered. In valid UTF-8 JSON both can only be written as \\u escapes.
    return _replace_unstorable(value) if _ESCAPED_UNSTORABLE.search(text) else value


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400 parses to inf, which PostgreSQL's jsonb refuses
        raise ValueError(f"{text[:20]} is out of range")
    return value


def _replace_unstorable(value: object) -> object:
    if isinstance(value, str):
        return _UNSTORABLE.sub(_REPLACEMENT, value)
    if isinstance(value, list):
        return [_replace_unstorable(item) for item in value]
    if isinstance(value, dict):
        return {_replace_unstorable(k): _replace_unstorable(v) for k, v in value.items()}
    return value


# --- Describing one event ----------------------------------------------------------------


@dataclass(frozen=True)
class Described:
    """What processing and deduplication need from one event; `problem` set: rejected."""

    event: str
    message_id: str
    ack: str
    dedup_key: str
    occurred_at: datetime | None
    problem: str = ""


def event_describe(item: object) -> Described:
    """Describe one event (a Format A object or one Format B array item)."""
    if not isinstance(item, dict):
        return _rejected(item, f"not an event object but a JSON {_json_type(item)}")
    event = payloads.event_name(item)
    if not event:
        return _rejected(item, "no event name")
    if event not in payloads.HANDLED_EVENTS:
        return _rejected(item, f"event {event[:MAX_EVENT]!r} is not one Relance processes")
    data = payloads.event_data(item)
    if data is None:
        return _rejected(item, f"{event}: no data object")
    if event == payloads.SESSION_EVENT:
        return _describe_session(item)
    return _describe_message(event, item, data)


def _describe_message(event: str, item: dict, data: dict) -> Described:
    message_id, ack = payloads.message_id(item), payloads.message_ack(item)
    if not message_id:
        return _rejected(item, f"{event}: no message id")
    inbound = event == payloads.INBOUND_EVENT
    if inbound and not payloads.has_sender(data):
        return _rejected(item, f"{event}: no sender number (data.fromNumber)")
    # The inbound message's own id is unique; its ack changes nothing we act on.
    key = f"{event}|{message_id}" if inbound else f"{event}|{message_id}|{ack}"
    occurred = payloads.event_time(item, inbound=inbound)
    return _checked(Described(event, message_id, ack, key, occurred), item)


def _describe_session(item: dict) -> Described:
    device_id, status = payloads.session_device_id(item), payloads.session_status(item)
    if not status:
        return _rejected(item, f"{payloads.SESSION_EVENT}: no session status")
    occurred = payloads.event_time(item, inbound=False)
    # A session goes offline and online again many times: its time (or, lacking one, its
    # whole content) tells one change from the next.
    when = occurred.isoformat() if occurred else _fingerprint(item)
    key = f"{payloads.SESSION_EVENT}|{device_id}|{status}|{when}"
    return _checked(Described(payloads.SESSION_EVENT, device_id, status, key, occurred), item)


def _checked(described: Described, item: dict) -> Described:
    for name, value, limit in (("id", described.message_id, MAX_ID), ("ack", described.ack, MAX_ACK)):
        if len(value) > limit:
            return _rejected(item, f"{described.event}: {name} longer than {limit} characters")
    return described


def _rejected(item: object, problem: str) -> Described:
    """A rejected event is still stored once: keyed by a hash of its whole content."""
    event, message_id, ack = payloads.event_summary(item)
    return Described(
        event=event[:MAX_EVENT],
        message_id=message_id[:MAX_ID],
        ack=ack[:MAX_ACK],
        dedup_key=f"rejected|{_fingerprint(item)}",
        occurred_at=None,
        problem=problem,
    )


def _fingerprint(item: object) -> str:
    canonical = json.dumps(item, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _json_type(value: object) -> str:
    names = {list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


# --- Storing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stored:
    stored: int  # new events waiting for processing
    rejected: int  # new events stored as rejected
    duplicates: int  # redeliveries of events already stored

    def as_dict(self) -> dict:
        return {"stored": self.stored, "rejected": self.rejected, "duplicates": self.duplicates}


# One statement per delivery, atomic on its own (no BEGIN/COMMIT round trips, one
# commit): the events, and for each new one waiting for processing its django-q task, as
# the ORM broker would write it (key, payload, lock; config/queue.py builds them). The
# task exists if and only if its event was stored: an outbox. A redelivery, or a
# duplicate inside one array, hits the unique key and gets neither; concurrent deliveries
# of one event wait for each other on that index, so exactly one of them inserts.
# bench/webhook_ingest.py measures this path; as two commits (the event, then
# async_task on commit) it took about 20% fewer events/s.
_STORE_SQL = """
WITH given AS (
  SELECT DISTINCT ON (dedup_key) * FROM (VALUES {rows})
    AS v (event, message_id, ack, dedup_key, payload, status, reason, occurred_at, task)
), stored AS (
  INSERT INTO {event_table}
    (event, message_id, ack, dedup_key, payload, status, reason, occurred_at, received_at, attempts)
  SELECT event, message_id, ack, dedup_key, payload::jsonb, status, reason, occurred_at, %s, 0 FROM given
  ON CONFLICT (dedup_key) DO NOTHING
  RETURNING id, status, dedup_key
), queued AS (
  INSERT INTO {queue_table} (key, payload, lock)
  SELECT %s, given.task, %s FROM stored JOIN given USING (dedup_key)
  WHERE stored.status = 'received' AND given.task IS NOT NULL
)
SELECT id, status FROM stored
"""
_ROW_SQL = "(%s, %s, %s, %s, %s, %s, %s, %s::timestamptz, %s)"
PROCESS_TASK = "webhooks.tasks.process_event"


def events_store(*, body: object) -> Stored:
    """Store every event of a parsed body once, with a processing task for each new one."""
    items = payloads.body_events(body)
    described = [event_describe(item) for item in items]
    # With django-q's ORM broker each task is written in the same statement as its event.
    # Otherwise (another broker; or sync mode in tests, where a task runs the moment it
    # is made) tasks are made once their events are committed.
    together = queue.tasks_in_statement()
    cluster = settings.Q_CLUSTER["name"]  # the default cluster, never the senders'
    task_cluster = cluster if together else None
    params = [
        value for item, d in zip(items, described, strict=True) for value in _row(item, d, task_cluster)
    ]
    inserted = _run_store(_store_sql(len(items)), [*params, clock.now(), *_task_columns(cluster)])
    waiting = [pk for pk, status in inserted if status == EventStatus.RECEIVED]
    for pk in () if together else waiting:
        transaction.on_commit(partial(async_task, PROCESS_TASK, pk, cluster=cluster), robust=True)
    rejected = len(inserted) - len(waiting)
    return Stored(stored=len(waiting), rejected=rejected, duplicates=len(items) - len(inserted))


def _store_sql(rows: int) -> str:
    return _STORE_SQL.format(
        rows=", ".join([_ROW_SQL] * rows),
        event_table=WebhookEvent._meta.db_table,
        queue_table=queue.task_queue_table(),
    )


def _task_columns(cluster: str) -> tuple:
    """The (key, lock) columns shared by every task row of the statement."""
    return queue.task_queue_key(cluster=cluster), queue.task_ready_at()


def _run_store(sql: str, params: list) -> list[tuple]:
    """Run _STORE_SQL; a connection found dead is replaced and the statement run once more.

    This stands in for Django's CONN_HEALTH_CHECKS, which would send a SELECT 1 before it
    in every request (a round trip and a fifth of a delivery's CPU) to catch a connection
    that died while idle, say across a PostgreSQL restart. The statement is idempotent:
    had the lost attempt committed, the second finds its events as duplicates.
    """
    try:
        return _execute(sql, params)
    except (OperationalError, InterfaceError):
        if connection.in_atomic_block:  # the transaction is lost with the connection
            raise
        logger.warning("webhook: database connection lost, storing again on a new one")
        connection.close()
        return _execute(sql, params)


def _execute(sql: str, params: list) -> list[tuple]:
    with prepared_cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _row(item: object, described: Described, task_cluster: str | None) -> tuple:
    """The statement's values for one event; with its task's package when `task_cluster`."""
    status = EventStatus.REJECTED if described.problem else EventStatus.RECEIVED
    task = _task_package(described, task_cluster) if task_cluster and not described.problem else None
    payload = json.dumps(item, ensure_ascii=False)
    return (
        described.event,
        described.message_id,
        described.ack,
        described.dedup_key,
        payload,
        status,
        described.problem,
        described.occurred_at,
        task,
    )


def _task_package(described: Described, cluster: str) -> str:
    """The signed django-q package of `process_event(dedup_key)` (config/queue.py).

    The event's id is not known before the statement runs; its key is, and is as unique.
    """
    name = f"webhook {described.event}"
    return queue.task_package(func=PROCESS_TASK, args=(described.dedup_key,), name=name, cluster=cluster)
