"""The sender's hot path, in SQL: device snapshot, claim with quota, outcome.

A sender runs these for every message. As single statements (data-modifying CTEs, each
atomic on its own, prepared once per connection) a send costs two round trips instead of
fourteen, and none of the ORM's compile time; one when the next send may follow at once,
as an accepted send's outcome then carries the next claim. bench/send_pipeline.py
measures the pipeline against a bare loop.

Tables are named through their models' `_meta.db_table`, never spelled out: the statements
are built once, at import, so a send costs nothing more for it.
"""

import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from django.db import connection

from campaigns.models import Campaign, Contact
from config.prepared import prepared_cursor
from messaging import pacing
from messaging.models import Device, DeviceDay, Message, MessageAttempt, MessageKind

_MESSAGE = Message._meta.db_table
_ATTEMPT = MessageAttempt._meta.db_table
_DEVICE = Device._meta.db_table
_DEVICE_DAY = DeviceDay._meta.db_table
_CAMPAIGN = Campaign._meta.db_table
_CONTACT = Contact._meta.db_table
_CAMPAIGN_DEVICE = Campaign.devices.through._meta.db_table


def quota_column(kind: str) -> str:
    return f"{MessageKind.paced_as(kind)}_count"


# --- Snapshot -------------------------------------------------------------------------------

# Sending campaigns of the device first, then one index probe each (message_due_by_campaign):
# the pending messages of its paused and scheduled campaigns are never read. LIMIT 1 keeps
# each probe correlated: with stale statistics PostgreSQL may otherwise hash the whole
# subquery, reading every pending row.
_DUE_SQL = f"""
(SELECT 1 FROM {_CAMPAIGN_DEVICE} cd JOIN {_CAMPAIGN} c ON c.id = cd.campaign_id AND c.status = 'sending'
 WHERE cd.device_id = d.id AND EXISTS (
   SELECT 1 FROM {_MESSAGE} m WHERE m.campaign_id = cd.campaign_id AND m.device_id = d.id
     AND m.status = 'pending' AND m.kind = '{{kind}}' AND m.next_attempt_at <= %(now)s)
 LIMIT 1) IS NOT NULL
"""
# A test send and an opt-out confirmation leave whatever their campaign's status.
_BEYOND_DUE_SQL = f"""
(SELECT 1 FROM {_MESSAGE} m WHERE m.device_id = d.id AND m.status = 'pending'
   AND m.kind = '{{kind}}' AND m.next_attempt_at <= %(now)s LIMIT 1) IS NOT NULL
"""
# SQL lists of kinds: those that leave whatever their campaign's status, those paced as Message 2.
BEYOND_THE_CAMPAIGN = ", ".join(f"'{kind}'" for kind in MessageKind.beyond_the_campaign())
_AS_MESSAGE_2 = ", ".join(
    f"'{k}'" for k in MessageKind.values if MessageKind.paced_as(k) == MessageKind.MESSAGE_2
)
# When the contact of an answer `m` wrote: a Message 2's is its Message 1's reply (one probe of
# the unique (contact, campaign, kind) index), else when it was made; an opt-out confirmation's
# is when the contact opted out.
_REPLIED_AT = f"""CASE m.kind
  WHEN 'message_2' THEN COALESCE((SELECT r.replied_at FROM {_MESSAGE} r WHERE r.contact_id = m.contact_id
    AND r.campaign_id = m.campaign_id AND r.kind = 'message_1'), m.created_at)
  WHEN '{MessageKind.OPT_OUT}' THEN (SELECT o.opted_out_at FROM {_CONTACT} o WHERE o.id = m.contact_id)
  ELSE m.created_at END"""
# Outside the send window an answer goes only within its allowance after the contact wrote.
_ANSWER_IN_ALLOWANCE = f"""(%(replied_since)s::timestamptz IS NULL OR m.kind NOT IN ({_AS_MESSAGE_2})
  OR {_REPLIED_AT} >= %(replied_since)s)"""
_SNAPSHOT_SQL = f"""
SELECT d.*,
  (SELECT max({_REPLIED_AT}) FROM {_MESSAGE} m JOIN {_CAMPAIGN} c ON c.id = m.campaign_id
   WHERE m.device_id = d.id AND m.status = 'pending' AND m.kind IN ({_AS_MESSAGE_2})
     AND m.next_attempt_at <= %(now)s AND (c.status = 'sending' OR m.kind IN ({BEYOND_THE_CAMPAIGN})))
  AS message_2_replied_at,
  {_DUE_SQL.format(kind=MessageKind.MESSAGE_1)} AS message_1_due,
  {_DUE_SQL.format(kind=MessageKind.MESSAGE_2)} AS message_2_due,
  {_BEYOND_DUE_SQL.format(kind=MessageKind.TEST)} AS test_due,
  {_BEYOND_DUE_SQL.format(kind=MessageKind.OPT_OUT)} AS opt_out_due,
  COALESCE(dd.message_1_count, 0) AS message_1_today,
  COALESCE(dd.message_2_count, 0) AS message_2_today
FROM {_DEVICE} d
LEFT JOIN {_DEVICE_DAY} dd ON dd.device_id = d.id AND dd.day = %(day)s
WHERE d.id = ANY(%(ids)s)
ORDER BY d.id
"""


def devices_with_sending_facts(device_ids, now: datetime) -> list[Device]:
    """The devices, each with what a plan needs: `message_1_due` / `message_2_due` /
    `test_due` / `opt_out_due` (an index probe each) and today's counts `message_1_today` /
    `message_2_today`."""
    params = {"ids": list(device_ids), "now": now, "day": now.date()}
    return list(Device.objects.raw(_SNAPSHOT_SQL, params))


def device_snapshot(device_id: int, now: datetime) -> Device:
    return devices_with_sending_facts([device_id], now)[0]


# The message each device's claim would take next (the claim's order, through its sending
# campaigns as the claim goes), and since when it has been due.
_NEXT_DUE_SQL = f"""
SELECT d.id, (
  SELECT m.next_attempt_at FROM {_CAMPAIGN_DEVICE} cd
  JOIN {_CAMPAIGN} c ON c.id = cd.campaign_id AND c.status = 'sending'
  CROSS JOIN LATERAL (
    SELECT m.kind, m.id, m.next_attempt_at FROM {_MESSAGE} m
    WHERE m.campaign_id = cd.campaign_id AND m.device_id = cd.device_id AND m.status = 'pending'
      AND m.next_attempt_at <= %(now)s
    ORDER BY m.kind DESC, m.id LIMIT 1
  ) m
  WHERE cd.device_id = d.id
  ORDER BY m.kind DESC, m.id LIMIT 1)
FROM {_DEVICE} d WHERE d.id = ANY(%(ids)s) ORDER BY d.id
"""


def devices_next_due(device_ids, now: datetime) -> dict[int, datetime | None]:
    """{device: when the message its claim would take next became due (None: nothing due)}."""
    with connection.cursor() as cursor:
        cursor.execute(_NEXT_DUE_SQL, {"ids": list(device_ids), "now": now})
        return dict(cursor.fetchall())


# --- Claim ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """A message moved to `sending` by this sender, with all a send needs."""

    message_id: int
    kind: str
    attempts: int  # the attempts that count against the retry limit, this one included
    attempt_number: int  # this attempt's record: every try is kept, a refunded one too
    reference: str
    content: str
    campaign_id: int
    contact_id: int
    device_id: int
    phone: str
    template: dict | None  # Message 1's WhatsApp template, when the campaign uses one
    started_at: datetime


# One statement, atomic on its own: lock the next due message (a row another sender holds
# is skipped, never waited for), count it against the device's UTC day unless that would
# pass the limit or eat into the Message 2 reserve [4.4], and only then move it to
# `sending`, store the device's pacing state and open the attempt record. `found` tells
# "nothing due" from "quota spent, or the day's row does not exist yet". A contact who
# opted out is never sent to, even by a message that was in flight when they did and came
# back to `pending` afterwards (a retry); the dispatcher cancels such messages.
# The device's sending campaigns come first, and each gives its own next due message (an
# index probe on message_due_by_campaign): a claim never walks the waiting messages of the
# device's paused or scheduled campaigns, however many. Each campaign's candidate is locked
# (a handful, for the statement only); the best of them is taken. A test send ('test' sorts
# first: the operator waits for it) and an opt-out confirmation (to a contact who just opted
# out: that is its point) leave whatever their campaign's status: one more probe, on the
# device's due index, finds them. A test goes to its own number and takes a Message 1's quota,
# a confirmation a Message 2's.
_CLAIM_CTES = f"""
next AS (
  SELECT m.id, m.kind FROM {_CAMPAIGN_DEVICE} cd
  JOIN {_CAMPAIGN} c ON c.id = cd.campaign_id AND c.status = 'sending'
  -- A device halted meanwhile (its session went offline, say) claims nothing, even from a
  -- sender whose snapshot of it is warm; nor does a loop whose lease on it lapsed.
  JOIN {_DEVICE} d ON d.id = cd.device_id AND d.halted_at IS NULL
    AND (%(owner)s::text IS NULL OR (d.lease_owner = %(owner)s AND d.lease_expires_at >= %(now)s))
  CROSS JOIN LATERAL (
    SELECT m.id, m.kind FROM {_MESSAGE} m
    JOIN {_CONTACT} ct ON ct.id = m.contact_id
    WHERE m.campaign_id = cd.campaign_id AND m.device_id = cd.device_id AND m.status = 'pending'
      AND m.kind = ANY(%(kinds)s) AND m.kind NOT IN ({BEYOND_THE_CAMPAIGN})
      AND m.next_attempt_at <= %(now)s AND ct.opted_out_at IS NULL AND {_ANSWER_IN_ALLOWANCE}
    ORDER BY m.kind DESC, m.id
    LIMIT 1
    FOR UPDATE OF m SKIP LOCKED
  ) m
  WHERE cd.device_id = %(device)s
  UNION ALL
  SELECT beyond.id, beyond.kind FROM (
    SELECT m.id, m.kind FROM {_MESSAGE} m
    JOIN {_DEVICE} d ON d.id = m.device_id AND d.halted_at IS NULL
      AND (%(owner)s::text IS NULL OR (d.lease_owner = %(owner)s AND d.lease_expires_at >= %(now)s))
    WHERE m.device_id = %(device)s AND m.status = 'pending' AND m.kind IN ({BEYOND_THE_CAMPAIGN})
      AND m.kind = ANY(%(kinds)s) AND m.next_attempt_at <= %(now)s AND {_ANSWER_IN_ALLOWANCE}
    ORDER BY m.kind DESC, m.id
    LIMIT 1
    FOR UPDATE OF m SKIP LOCKED
  ) beyond
  ORDER BY kind DESC, id
  LIMIT 1
), taken AS (
  UPDATE {_DEVICE_DAY} dd SET
    message_1_count = dd.message_1_count + (next.kind NOT IN ({_AS_MESSAGE_2}))::int,
    message_2_count = dd.message_2_count + (next.kind IN ({_AS_MESSAGE_2}))::int
  FROM next
  WHERE dd.device_id = %(device)s AND dd.day = %(day)s
    AND dd.message_1_count + dd.message_2_count < %(limit)s
    AND (next.kind IN ({_AS_MESSAGE_2}) OR dd.message_1_count < %(message_1_allowance)s)
  RETURNING next.id
), claimed AS (
  UPDATE {_MESSAGE} m SET status = 'sending', attempts = m.attempts + 1, updated_at = %(now)s
  FROM taken WHERE m.id = taken.id
  RETURNING m.id, m.kind, m.attempts, m.reference, m.content, m.campaign_id, m.contact_id, m.phone
), paced AS (
  UPDATE {_DEVICE}
  SET last_sent_at = %(last_sent_at)s, sent_in_batch = %(sent_in_batch)s, paused_until = %(paused_until)s,
    next_gap_seconds = %(next_gap_seconds)s, batch_target = %(batch_target)s
  WHERE id = %(device)s AND EXISTS (SELECT 1 FROM taken)
), opened AS (
  INSERT INTO {_ATTEMPT} (message_id, number, started_at, outcome, error)
  SELECT id,
    COALESCE((SELECT max(a.number) FROM {_ATTEMPT} a WHERE a.message_id = claimed.id), 0) + 1,
    %(now)s, 'in_flight', ''
  FROM claimed
  RETURNING number
)
"""
_CLAIMED_ROW = f"""
SELECT claimed.id, claimed.kind, claimed.attempts, (SELECT number FROM opened), claimed.reference,
       claimed.content, claimed.campaign_id, claimed.contact_id,
       COALESCE(NULLIF(claimed.phone, ''), ct.phone), cp.message_1_template_name,
       cp.message_1_template_language, cp.message_1_template_variables,
       (SELECT count(*) FROM next) AS found
FROM (SELECT 1) AS always_one_row
LEFT JOIN claimed ON true
LEFT JOIN {_CONTACT} ct ON ct.id = claimed.contact_id
LEFT JOIN {_CAMPAIGN} cp ON cp.id = claimed.campaign_id
"""
_CLAIM_SQL = f"WITH {_CLAIM_CTES} {_CLAIMED_ROW}"
_DAY_ROW_SQL = f"""
INSERT INTO {_DEVICE_DAY} (device_id, day, message_1_count, message_2_count)
VALUES (%s, %s, 0, 0) ON CONFLICT (device_id, day) DO NOTHING
"""


def message_claim(
    *, device: Device, kinds: tuple[str, ...], now: datetime, owner: str | None = None
) -> Claim | None:
    """Claim the next due message (Message 2 first, then oldest) and take today's quota.

    `device` comes from `device_snapshot` and is kept current for the next plan. Returns
    None, changing nothing, if no message is claimable, the quota for its kind is spent, or
    (with `owner`, a sender loop) the device's lease is no longer that loop's.
    """
    params, after = _claim_params(device, kinds, now, owner)
    with prepared_cursor() as cursor:
        cursor.execute(_CLAIM_SQL, params)
        row = cursor.fetchone()
        if row[0] is None and row[-1]:
            # Something is due but was not taken: perhaps the day's first send.
            cursor.execute(_DAY_ROW_SQL, [device.pk, now.date()])
            cursor.execute(_CLAIM_SQL, params)
            row = cursor.fetchone()
    return _claimed(row[:-1], device, after, now)


def _claim_params(
    device: Device, kinds: tuple[str, ...], now: datetime, owner: str | None
) -> tuple[dict, pacing.DeviceState]:
    policy = device_policy(device)
    # The batch fields of the state after a send do not depend on the message's kind.
    after = pacing.pacing_record_send(
        policy=policy, state=device_state(device, now), now=now, kind=pacing.Kind.MESSAGE_1, rng=_JITTER
    )
    params = {
        "device": device.pk,
        "owner": owner,
        "kinds": list(kinds),
        "now": now,
        "day": now.date(),
        "limit": policy.limit_on(now.date()),
        "message_1_allowance": policy.allowance(pacing.Kind.MESSAGE_1, now.date()),
        "replied_since": message_2_replied_since(policy, now),
        "last_sent_at": after.last_sent_at,
        "sent_in_batch": after.sent_in_batch,
        "paused_until": after.paused_until,
        "next_gap_seconds": after.next_gap_seconds,
        "batch_target": after.batch_target,
    }
    return params, after


def message_2_replied_since(policy: pacing.PacingPolicy, now: datetime) -> datetime | None:
    """Outside the send window, only a Message 2 whose contact wrote since then may go; None
    while the window is open."""
    if pacing.window_is_open(policy.window, policy.zone, now):
        return None
    return now - timedelta(seconds=policy.message_2_after_hours_seconds)


def _claimed(row, device: Device, after: pacing.DeviceState, now: datetime) -> Claim | None:
    if row[0] is None:
        return None
    claim = _claim_from_row(row, device, now)
    _remember_send(device, after, claim.kind)
    return claim


def _remember_send(device: Device, after: pacing.DeviceState, kind: str) -> None:
    """Keep the snapshot current, so that the next plan needs no new query."""
    device.last_sent_at, device.sent_in_batch = after.last_sent_at, after.sent_in_batch
    device.paused_until = after.paused_until
    device.next_gap_seconds, device.batch_target = after.next_gap_seconds, after.batch_target
    counter = f"{MessageKind.paced_as(kind)}_today"
    setattr(device, counter, getattr(device, counter) + 1)


def _claim_from_row(row, device: Device, now: datetime) -> Claim:
    (
        message_id,
        kind,
        attempts,
        attempt_number,
        reference,
        content,
        campaign_id,
        contact_id,
        phone,
        template_name,
        template_language,
        template_variables,
    ) = row
    template = None
    if kind == MessageKind.MESSAGE_1 and template_name:
        template = {"name": template_name, "language": template_language, "variables": template_variables}
    return Claim(
        message_id,
        kind,
        attempts,
        attempt_number,
        str(reference),
        content,
        campaign_id,
        contact_id,
        device.pk,
        phone,
        template,
        now,
    )


def quota_give_back(*, device_id: int, day: date, kind: str) -> None:
    """A send that surely did not go out does not count against the day."""
    column = quota_column(kind)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {_DEVICE_DAY} SET {column} = {column} - 1"
            f" WHERE device_id = %s AND day = %s AND {column} > 0",
            [device_id, day],
        )


def quota_take_again(*, device_id: int, day: date, kind: str) -> None:
    """A send given up as never made did go out (a receipt proves it): it counts again.

    No limit check: the send happened, and the day's counter must say so.
    """
    column, message_2 = quota_column(kind), int(kind == MessageKind.MESSAGE_2)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {_DEVICE_DAY} (device_id, day, message_1_count, message_2_count)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT (device_id, day)"
            f" DO UPDATE SET {column} = {_DEVICE_DAY}.{column} + 1",
            [device_id, day, 1 - message_2, message_2],
        )


def device_policy(device: Device) -> pacing.PacingPolicy:
    """The device's pacing: its own figures, its window, and the settings' jitter and warm-up."""
    from django.conf import settings

    return pacing.PacingPolicy(
        gap_seconds=device.gap_seconds,
        batch_size=device.batch_size,
        batch_pause_seconds=device.batch_pause_seconds,
        daily_limit=device.daily_limit,
        message_2_reserve=pacing.reserve_for(device.daily_limit, settings.MESSAGE_2_RESERVE_SHARE),
        window=_window(device.send_window),
        zone=_zone(device.time_zone),
        message_2_after_hours_seconds=settings.MESSAGE_2_AFTER_HOURS_MINUTES * 60,
        gap_jitter=settings.DEVICE_GAP_JITTER,
        batch_jitter=settings.DEVICE_BATCH_JITTER,
        warmup=_warmup(settings.DEVICE_WARMUP),
        number_since=device.number_since,
    )


@lru_cache(maxsize=256)
def _window(text: str) -> pacing.SendWindow:
    return pacing.parse_window(text)


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


@lru_cache(maxsize=8)
def _warmup(text: str) -> tuple:
    return pacing.parse_warmup(text)


# Jitter's random source: only its draws' spread matters, and they are kept on the device.
_JITTER = random.Random()  # noqa: S311 - a rhythm, not a secret


def device_state(device: Device, now: datetime) -> pacing.DeviceState:
    """Pacing's view of a device returned by `devices_with_sending_facts`."""
    return pacing.DeviceState(
        last_sent_at=device.last_sent_at,
        sent_in_batch=device.sent_in_batch,
        day=now.date(),
        message_1_today=device.message_1_today,
        message_2_today=device.message_2_today,
        paused_until=device.paused_until,
        next_gap_seconds=device.next_gap_seconds,
        batch_target=device.batch_target,
    )


# --- Outcome ---------------------------------------------------------------------------------

# Only a row still in `sending` is ours to settle: a webhook may already have said it was
# sent. The attempt record is closed in the same statement, which says whether it settled.
_OUTCOME_CTES = f"""
settled AS (
  UPDATE {_MESSAGE} SET
    status = %(status)s, last_error = %(error)s, updated_at = %(now)s,
    next_attempt_at = COALESCE(%(next_attempt_at)s, next_attempt_at),
    sent_at = COALESCE(%(sent_at)s, sent_at), failed_at = COALESCE(%(failed_at)s, failed_at),
    wassenger_id = COALESCE(%(wassenger_id)s, wassenger_id),
    whatsapp_id = COALESCE(%(whatsapp_id)s, whatsapp_id),
    attempts = attempts - %(refund)s
  WHERE id = %(message)s AND status = 'sending'
  RETURNING id, events_waiting
), closed AS (
  UPDATE {_ATTEMPT}
  SET outcome = %(outcome)s, finished_at = %(now)s, http_status = %(http_status)s, error = %(error)s
  WHERE message_id = %(message)s AND number = %(number)s
)
"""
_OUTCOME_SQL = f"WITH {_OUTCOME_CTES} SELECT count(*), coalesce(bool_or(events_waiting), false) FROM settled"
# An accepted send's outcome and the next claim in one statement (one round trip, one
# commit): the two touch different rows (the settled one is `sending`, the claimed one
# `pending`), and the outcome never waits for the claim, which skips locked rows.
_OUTCOME_AND_CLAIM_SQL = f"""
WITH {_OUTCOME_CTES}, {_CLAIM_CTES}
SELECT claimed_row.*, (SELECT coalesce(bool_or(events_waiting), false) FROM settled) AS events_waiting,
       (SELECT count(*) FROM settled) AS settled
FROM ({_CLAIMED_ROW}) AS claimed_row
"""


@dataclass(frozen=True)
class Stored:
    """What storing a send's outcome came to."""

    settled: bool  # False: the message was no longer `sending` (a receipt settled it first)
    events_waiting: bool  # webhook events wait for this outcome: process them now


def outcome_store(*, claim: Claim, outcome: str, changes: dict, http_status: int | None, now) -> Stored:
    """Write the message's new state (`changes`: status, error, and optional fields)."""
    params = _outcome_params(claim, outcome, changes, http_status, now)
    with prepared_cursor() as cursor:
        cursor.execute(_OUTCOME_SQL, params)
        settled, events_waiting = cursor.fetchone()
    return Stored(settled == 1, events_waiting)


def outcome_store_and_claim(
    *,
    claim: Claim,
    outcome: str,
    changes: dict,
    http_status: int | None,
    now,
    device: Device,
    kinds,
    owner: str | None = None,
) -> tuple[Stored, Claim | None]:
    """`outcome_store`, then `message_claim` at the same `now`, in one statement.

    The claim is None when nothing was claimable, the quota is spent or the day's row is
    missing: the caller then looks again through `message_claim`, which handles all three.
    """
    params, after = _claim_params(device, kinds, now, owner)
    params.update(_outcome_params(claim, outcome, changes, http_status, now))
    with prepared_cursor() as cursor:
        cursor.execute(_OUTCOME_AND_CLAIM_SQL, params)
        row = cursor.fetchone()
    # The claimed row ends with its `found` count, then the outcome's two columns.
    return Stored(row[-1] == 1, row[-2]), _claimed(row[:-3], device, after, now)


def _outcome_params(claim: Claim, outcome: str, changes: dict, http_status: int | None, now) -> dict:
    return {
        "next_attempt_at": None,
        "sent_at": None,
        "failed_at": None,
        "wassenger_id": None,
        "whatsapp_id": None,
        "refund": 0,
        **changes,
        "message": claim.message_id,
        "number": claim.attempt_number,
        "outcome": outcome,
        "http_status": http_status,
        "now": now,
    }
