"""Webhook intake: read the body, describe each event, store it once, enqueue processing.

Nothing here acts on an event. It makes sure every event Wassenger posts is kept exactly
once (a redelivery hits the unique `dedup_key` and changes nothing) and that its
processing task is enqueued when, and only if, the row is committed (on the default
cluster; the sweeper in processing.py catches anything left waiting).

Both real formats arrive here (wassenger-api.md): Format A, one event object, and
Format B, an array of up to 25 gateway events; each array item is stored as its own event.
Parsing is lenient: only what processing needs is required, the rest is kept raw.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction
from django.utils import timezone
from django_q.conf import Conf
from django_q.models import OrmQ
from django_q.signing import SignedPackage
from django_q.tasks import async_task

from config import clock
from config.prepared import prepared_cursor
from webhooks.models import EventStatus

logger = logging.getLogger(__name__)

OUTBOUND_EVENTS = frozenset({"message:out:ack", "message:out:new", "message:out:sent", "message:out:failed"})
INBOUND_EVENT = "message:in:new"
SESSION_EVENT = "number:session"
HANDLED_EVENTS = OUTBOUND_EVENTS | {INBOUND_EVENT, SESSION_EVENT}
# Column widths of WebhookEvent: a longer value is refused rather than cut (a cut id
# could make two different events look like one).
MAX_EVENT, MAX_ID, MAX_ACK = 64, 128, 32
# Timestamps outside these years are garbage, not times (epoch seconds from 2000 to 2100).
_EPOCH_RANGE = (946_684_800, 4_102_444_800)
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
    event = text_of(item.get("event"))
    if not event:
        return _rejected(item, "no event name")
    if event not in HANDLED_EVENTS:
        return _rejected(item, f"event {event[:MAX_EVENT]!r} is not one Relance processes")
    data = item.get("data")
    if not isinstance(data, dict):
        return _rejected(item, f"{event}: no data object")
    if event == SESSION_EVENT:
        return _describe_session(item, data)
    return _describe_message(event, item, data)


def _describe_message(event: str, item: dict, data: dict) -> Described:
    message_id = first_text(data.get("id"), item.get("entityId"), item.get("id"), data.get("reference"))
    ack = first_text(item.get("ack"), data.get("ack"), data.get("deliveryStatus"), data.get("status"))
    if not message_id:
        return _rejected(item, f"{event}: no message id")
    if event == INBOUND_EVENT:
        if not first_text(data.get("fromNumber"), data.get("from")):
            return _rejected(item, f"{event}: no sender number (data.fromNumber)")
        # The inbound message's own id is unique; its ack changes nothing we act on.
        key, occurred = f"{event}|{message_id}", _first_moment(data, item, inbound=True)
    else:
        key, occurred = f"{event}|{message_id}|{ack}", _first_moment(data, item, inbound=False)
    return _checked(Described(event, message_id, ack, key, occurred), item)


def _describe_session(item: dict, data: dict) -> Described:
    device = item.get("device") if isinstance(item.get("device"), dict) else {}
    device_id = first_text(device.get("id"), dig(data, "device", "id"), data.get("device"), data.get("id"))
    status = session_status(item)
    if not status:
        return _rejected(item, f"{SESSION_EVENT}: no session status")
    occurred = _first_moment(data, item, inbound=False)
    # A session goes offline and online again many times: its time (or, lacking one, its
    # whole content) tells one change from the next.
    when = occurred.isoformat() if occurred else _fingerprint(item)
    key = f"{SESSION_EVENT}|{device_id}|{status}|{when}"
    return _checked(Described(SESSION_EVENT, device_id, status, key, occurred), item)


def session_status(item: dict) -> str:
    data = item.get("data") if isinstance(item.get("data"), dict) else {}
    return first_text(
        dig(data, "session", "status"),
        data.get("status"),
        dig(data, "device", "session", "status"),
        dig(item, "device", "session", "status"),
        item.get("status"),
    ).lower()


def _checked(described: Described, item: dict) -> Described:
    for name, value, limit in (("id", described.message_id, MAX_ID), ("ack", described.ack, MAX_ACK)):
        if len(value) > limit:
            return _rejected(item, f"{described.event}: {name} longer than {limit} characters")
    return described


def _rejected(item: object, problem: str) -> Described:
    """A rejected event is still stored once: keyed by a hash of its whole content."""
    as_dict = item if isinstance(item, dict) else {}
    data = as_dict.get("data") if isinstance(as_dict.get("data"), dict) else {}
    return Described(
        event=text_of(as_dict.get("event"))[:MAX_EVENT],
        message_id=first_text(data.get("id"), as_dict.get("id"))[:MAX_ID],
        ack=first_text(as_dict.get("ack"), data.get("ack"), data.get("status"))[:MAX_ACK],
        dedup_key=f"rejected|{_fingerprint(item)}",
        occurred_at=None,
        problem=problem,
    )


# --- Small readers -------------------------------------------------------------------------


def text_of(value: object) -> str:
    """A string or integer field as text; anything else (objects, booleans, null) as ""."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return ""


def first_text(*values: object) -> str:
    return next((text for text in map(text_of, values) if text), "")


def dig(value: object, *keys: str) -> object:
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def moment_of(value: object) -> datetime | None:
    """An epoch (seconds or milliseconds) or ISO 8601 time as an aware datetime, else None."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        seconds = value / 1000 if value > _EPOCH_RANGE[1] else value
        if _EPOCH_RANGE[0] <= seconds <= _EPOCH_RANGE[1]:
            return datetime.fromtimestamp(seconds, UTC)
        return None
    if not isinstance(value, str) or not 10 <= len(value) <= 40:
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment if 2000 <= moment.year <= 2100 else None


def _first_moment(data: dict, item: dict, *, inbound: bool) -> datetime | None:
    # A reply's own time is when the contact wrote; a receipt's is when the event was made.
    own = (data.get("timestamp"), data.get("date"))
    envelope = (item.get("created"), item.get("date"))
    for value in (*own, *envelope) if inbound else (*envelope, *own):
        if (moment := moment_of(value)) is not None:
            return moment
    return None


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
# the ORM broker would write it (key, payload, lock). The task exists if and only if its
# event was stored: an outbox. A redelivery, or a duplicate inside one array, hits the
# unique key and gets neither; concurrent deliveries of one event wait for each other on
# that index, so exactly one of them inserts. bench/webhook_ingest.py measures this path;
# as two commits (the event, then async_task on commit) it took about 20% fewer events/s.
_STORE_SQL = """
WITH given AS (
  SELECT DISTINCT ON (dedup_key) * FROM (VALUES {rows})
    AS v (event, message_id, ack, dedup_key, payload, status, reason, occurred_at, task)
), stored AS (
  INSERT INTO webhooks_webhookevent
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
    items = body if isinstance(body, list) and body else [body]
    described = [event_describe(item) for item in items]
    # With django-q's ORM broker each task is written in the same statement as its event.
    # Otherwise (another broker; or sync mode in tests, where a task runs the moment it
    # is made) tasks are made once their events are committed.
    together = bool(Conf.ORM) and not Conf.SYNC
    params = [value for item, d in zip(items, described, strict=True) for value in _row(item, d, together)]
    now, queue = clock.now(), settings.Q_CLUSTER["name"]  # the default cluster, never the senders'
    sql = _STORE_SQL.format(rows=", ".join([_ROW_SQL] * len(items)), queue_table=OrmQ._meta.db_table)
    inserted = _run_store(sql, [*params, now, queue, timezone.now()])
    waiting = [pk for pk, status in inserted if status == EventStatus.RECEIVED]
    for pk in () if together else waiting:
        transaction.on_commit(partial(async_task, PROCESS_TASK, pk, cluster=queue), robust=True)
    rejected = len(inserted) - len(waiting)
    return Stored(stored=len(waiting), rejected=rejected, duplicates=len(items) - len(inserted))


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


def _row(item: object, described: Described, with_task: bool) -> tuple:
    status = EventStatus.REJECTED if described.problem else EventStatus.RECEIVED
    task = _task_package(described) if with_task and not described.problem else None
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


def _task_package(described: Described) -> str:
    """The signed django-q package of `process_event(dedup_key)`, the task async_task would
    make (tests/webhooks check that the cluster runs it).

    Built here rather than through async_task, which adds a human-readable id, signals and
    an "Enqueued" log line per event: half of the package's cost on the webhook's hot path.
    The event's id is not known before the statement runs; its key is, and is as unique.
    """
    task = {"id": uuid.uuid4().hex, "name": f"webhook {described.event}", "func": PROCESS_TASK}
    task.update(args=(described.dedup_key,), kwargs={}, started=timezone.now())
    if Conf.ACK_FAILURES:
        task["ack_failure"] = Conf.ACK_FAILURES
    if Conf.CACHED:
        task["cached"] = Conf.CACHED
    return SignedPackage.dumps(task)
