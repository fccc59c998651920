"""A year of Relance in set-based SQL, for bench/at_scale.py (not a benchmark of its own).

At scale 1: 10 devices, 300 campaigns, 400,000 contacts, about 2,000,000 messages (1,850,000
Message 1s and a Message 2 for each one answered), 6,000,000 webhook events (one inbound per
reply, the rest receipts), 3,000,000 attempts and 100,000 task results, spread over 365 days.
Devices and campaigns keep their number at every scale; the rows under them shrink with it.

Campaign 1 is a completed 100,000-recipient campaign (the CSV export's); 2–290 are completed
ones, oldest first; 291–292 are paused and 293–294 scheduled, each on the device of one of the
sending campaigns 295–300, with their pending Message 1s *before* the sending campaign's in id
order: what a claim on that device must not walk through. Ids are given explicitly (a fresh
database), so each statement can compute which campaign, contact and device a row belongs to.
"""

from __future__ import annotations

import time
from datetime import datetime

SEED_VERSION = "5"
DEVICES = 10
CAMPAIGNS = 300
PAUSED = (291, 292)
SCHEDULED = (293, 294)
SENDING = tuple(range(295, 301))
CSV_CAMPAIGN = 1


def sizes(scale: float) -> dict:
    """Row counts at `scale` (1 = a year of a 10-number team)."""
    return {
        "contacts": max(400, round(400_000 * scale)),
        "message_1": max(2_000, round(1_850_000 * scale)),
        "csv_recipients": max(100, round(100_000 * scale)),
        "events": max(6_000, round(6_000_000 * scale)),
        "attempts": max(3_000, round(3_000_000 * scale)),
        "tasks": max(100, round(100_000 * scale)),
    }


def campaign_device(campaign: str) -> str:
    """SQL: the device of campaign `campaign` (an expression); paused and scheduled campaigns
    share the devices of the first sending ones."""
    return (
        f"CASE WHEN {campaign} >= {SENDING[0]} THEN {campaign} - {SENDING[0] - 2} "
        f"WHEN {campaign} > 290 THEN {campaign} - 289 ELSE mod({campaign}, {DEVICES}) + 1 END"
    )


def _role(campaign: str) -> str:
    return (
        f"CASE WHEN {campaign} IN {PAUSED} THEN 'paused' WHEN {campaign} IN {SCHEDULED} THEN 'scheduled' "
        f"WHEN {campaign} >= {SENDING[0]} THEN 'sending' ELSE 'completed' END"
    )


_SQL = {
    "devices": f"""
INSERT INTO messaging_device (id, label, wassenger_id, phone, is_default, daily_limit, gap_seconds,
  batch_size, batch_pause_seconds, sent_in_batch, halted_reason, session_status, wassenger_status, plan,
  lease_owner, link_failures, created_at, time_zone, send_window, number_since)
SELECT d, 'Numéro ' || d, lpad(to_hex(d), 24, '0'), '+3370000' || lpad(d::text, 4, '0'), d = 1, 1000, 25,
  25, 300, 0, '', 'online', 'operative', 'io-professional', '', 0, %(now)s::timestamptz - interval '400 days',
  'Europe/Paris', 'always', (%(now)s::timestamptz - interval '400 days')::date
FROM generate_series(1, {DEVICES}) d
""",
    "campaigns": f"""
INSERT INTO campaigns_campaign (id, name, message_1_text, message_1_variants, message_1_media,
  message_1_template_name, message_1_template_language, message_1_template_variables, message_2_text,
  message_2_media, media_uploads, variable_fallbacks, starts_at, fatigue_days, skip_other_campaigns,
  status, launched_at, finished_at, created_at, updated_at, opt_out_confirmation)
SELECT g, 'Campagne ' || g, 'Bonjour {{{{ first_name }}}}', '[]', '', '', '', '[]', 'Merci !', '', '{{}}',
  '{{}}', CASE WHEN {_role("g")} = 'scheduled' THEN %(now)s::timestamptz + interval '1 day' END, 0, false,
  {_role("g")},
  t.launched, CASE WHEN {_role("g")} = 'completed' THEN t.launched + interval '30 days' END,
  t.launched - interval '1 hour', t.launched, ''
FROM generate_series(1, {CAMPAIGNS}) g,
  LATERAL (SELECT CASE WHEN g > 290 THEN %(now)s::timestamptz - interval '1 day'
                       ELSE %(now)s::timestamptz - (365 - g * 1.2) * interval '1 day' END AS launched) t
""",
    "campaign_devices": f"""
INSERT INTO campaigns_campaign_devices (campaign_id, device_id)
SELECT g, {campaign_device("g")} FROM generate_series(1, {CAMPAIGNS}) g
""",
    "categories": """
INSERT INTO campaigns_category (id, name, description, created_at)
SELECT g, 'Catégorie ' || g, '', %(now)s::timestamptz FROM generate_series(1, 3) g
""",
    "campaign_categories": """
INSERT INTO campaigns_campaign_categories (campaign_id, category_id)
SELECT g, mod(g, 3) + 1 FROM generate_series(1, 300) g
""",
    "contacts": """
INSERT INTO campaigns_contact (id, phone, name, first_name, fields, opted_out_at, whatsapp_status,
  created_at, updated_at)
SELECT n, '+336' || lpad(n::text, 8, '0'), 'Nom ' || n, 'Prénom ' || n,
  jsonb_build_object('ville', 'Ville ' || mod(n, 100)),
  CASE WHEN mod(n, 50) = 0 THEN %(now)s::timestamptz - (mod(n, 365)) * interval '1 day' END,
  'unknown', %(now)s::timestamptz - interval '400 days', %(now)s::timestamptz
FROM generate_series(1, %(contacts)s) n
""",
    "contact_categories": """
INSERT INTO campaigns_contact_categories (contact_id, category_id)
SELECT n, mod(n, 3) + 1 FROM generate_series(1, %(contacts)s) n
""",
    # Message n: campaign 1 for the first csv_recipients ids, then each campaign 2–300 a
    # contiguous block of `per_campaign`; k is its place in the campaign (25 s apart).
    "message_1": f"""
INSERT INTO messaging_message (id, campaign_id, contact_id, device_id, kind, content, status, whatsapp_id,
  attempts, next_attempt_at, sent_at, delivered_at, read_at, failed_at, replied_at, window_expired_at,
  last_error, created_at, updated_at)
SELECT n, p.campaign, mod((17 * n), %(contacts)s) + 1, {campaign_device("p.campaign")}, 'message_1',
  'Bonjour Prénom ' || n,
  CASE WHEN NOT s.done THEN 'pending' WHEN mod(n, 20) = 0 THEN 'failed'
       WHEN mod(n, 20) BETWEEN 2 AND 8 THEN 'read'
       WHEN mod(n, 20) BETWEEN 9 AND 15 THEN 'delivered' ELSE 'sent' END,
  CASE WHEN s.done AND mod(n, 20) <> 0 THEN 'wa' || n ELSE '' END,
  CASE WHEN NOT s.done THEN 0 WHEN mod(n, 20) = 0 THEN 3 ELSE 1 END,
  s.at,
  CASE WHEN s.done AND mod(n, 20) <> 0 THEN s.at END,
  CASE WHEN s.done AND mod(n, 20) BETWEEN 2 AND 15 THEN s.at + interval '1 minute' END,
  CASE WHEN s.done AND mod(n, 20) BETWEEN 2 AND 8 THEN s.at + interval '10 minutes' END,
  CASE WHEN s.done AND mod(n, 20) = 0 THEN s.at END,
  CASE WHEN s.done AND mod(n, 20) IN (2, 3) THEN s.at + interval '1 hour' END,
  CASE WHEN s.done AND mod(n, 20) NOT IN (0, 2, 3) AND s.at < %(now)s::timestamptz - interval '1 day'
       THEN s.at + interval '1 day' END,
  CASE WHEN s.done AND mod(n, 20) = 0 THEN 'invalid number' ELSE '' END,
  c.launched_at, coalesce(s.at, c.launched_at)
FROM generate_series(1, %(message_1)s) n,
  LATERAL (SELECT CASE WHEN n <= %(csv_recipients)s THEN 1 ELSE 2 + (n - %(csv_recipients)s - 1)
      / %(per_campaign)s END AS campaign,
    CASE WHEN n <= %(csv_recipients)s THEN n - 1 ELSE mod(n - %(csv_recipients)s - 1, %(per_campaign)s)
      END AS k) p
  JOIN campaigns_campaign c ON c.id = p.campaign,
  LATERAL (SELECT c.status = 'completed' OR (c.status IN ('sending', 'paused') AND p.k * 2 < %(per_campaign)s)
      AS done,
    CASE WHEN c.status = 'completed' THEN c.launched_at + p.k * interval '25 seconds'
         WHEN c.status = 'scheduled' THEN c.starts_at
         ELSE %(now)s::timestamptz - (%(per_campaign)s - p.k) * interval '25 seconds' END AS at) s
""",
    "message_2": """
INSERT INTO messaging_message (id, campaign_id, contact_id, device_id, kind, content, status, whatsapp_id,
  attempts, next_attempt_at, sent_at, delivered_at, read_at, created_at, updated_at)
SELECT %(message_1)s + row_number() OVER (ORDER BY m.id), m.campaign_id, m.contact_id, m.device_id,
  'message_2', 'Merci !', 'read', 'wb' || m.id, 1, m.replied_at, m.replied_at + interval '1 minute',
  m.replied_at + interval '2 minutes', m.replied_at + interval '5 minutes', m.replied_at, m.replied_at
FROM messaging_message m WHERE m.replied_at IS NOT NULL
""",
    # One inbound event (and its reply row) per answered Message 1, then receipts up to `events`.
    "inbound_events": """
INSERT INTO webhooks_webhookevent (id, event, message_id, ack, dedup_key, payload, status, reason,
  occurred_at, received_at, processed_at, attempts)
SELECT row_number() OVER (ORDER BY m.id), 'message:in:new', 'in' || m.id, '', 'message:in:new|in' || m.id,
  jsonb_build_object('event', 'message:in:new', 'data', jsonb_build_object('id', 'in' || m.id,
    'body', 'Oui merci')),
  'processed', 'triggered Message 2', m.replied_at, m.replied_at, m.replied_at, 1
FROM messaging_message m WHERE m.kind = 'message_1' AND m.replied_at IS NOT NULL
""",
    "inbound_messages": """
INSERT INTO webhooks_inboundmessage (event_id, contact_id, phone, device_id, written_at, text, media_kind,
  whatsapp_id, campaign_id, message_1_id, outcome)
SELECT e.id, m.contact_id, ct.phone, m.device_id, m.replied_at, 'Oui merci', '', e.message_id,
  m.campaign_id, m.id, 'message_2'
FROM webhooks_webhookevent e
JOIN messaging_message m ON m.id = substr(e.message_id, 3)::bigint
JOIN campaigns_contact ct ON ct.id = m.contact_id
WHERE e.event = 'message:in:new'
""",
    # Receipts spread evenly over the year, the newest last (ids grow with time).
    "receipt_events": """
INSERT INTO webhooks_webhookevent (id, event, message_id, ack, dedup_key, payload, status, reason,
  occurred_at, received_at, processed_at, attempts)
SELECT n, 'message:out:ack', 'wa' || (mod(n, %(message_1)s) + 1), a.ack,
  'message:out:ack|wa' || (mod(n, %(message_1)s) + 1) || '|' || a.ack || '|' || n,
  jsonb_build_object('event', 'message:out:ack', 'data', jsonb_build_object('id', 'wa' || n, 'ack', a.ack)),
  'processed', 'receipt applied', t.at, t.at, t.at, 1
FROM generate_series((SELECT count(*) FROM webhooks_webhookevent) + 1, %(events)s) n,
  LATERAL (SELECT %(now)s::timestamptz - (%(events)s - n) * (interval '365 days' / %(events)s) AS at) t,
  LATERAL (SELECT (ARRAY['server', 'delivered', 'read'])[mod(n, 3) + 1] AS ack) a
""",
    "attempts": """
INSERT INTO messaging_messageattempt (message_id, number, started_at, finished_at, outcome, http_status,
  error)
SELECT m.id, g, t.at, t.at + interval '1 second', CASE WHEN g = 1 THEN 'transient' ELSE 'accepted' END,
  CASE WHEN g = 1 THEN 502 ELSE 201 END, ''
FROM generate_series(1, 2) g
  JOIN messaging_message m ON m.id <= %(attempts)s / 2 + 1 AND m.status <> 'pending',
  LATERAL (SELECT coalesce(m.sent_at, m.failed_at, m.created_at) - (2 - g) * interval '1 minute' AS at) t
""",
    "tasks": """
INSERT INTO django_q_task (id, name, func, hook, args, kwargs, result, "group", cluster, started, stopped,
  success, attempt_count)
SELECT md5(n::text), 'task-' || n, 'webhooks.tasks.process_event', NULL, NULL, NULL, NULL, NULL, 'default',
  t.at, t.at + interval '1 second', false, 1
FROM generate_series(1, %(tasks)s) n,
  LATERAL (SELECT %(now)s::timestamptz - (%(tasks)s - n) * (interval '365 days' / %(tasks)s) AS at) t
""",
    "device_days": f"""
INSERT INTO messaging_deviceday (device_id, day, message_1_count, message_2_count)
SELECT d, %(now)s::date - g, CASE WHEN g = 0 THEN 0 ELSE 500 END, CASE WHEN g = 0 THEN 0 ELSE 50 END
FROM generate_series(1, {DEVICES}) d, generate_series(0, 364) g
""",
    "daily_reports": """
INSERT INTO monitoring_dailyreport (day, figures, sent_at)
SELECT %(now)s::date - g, '[]', %(now)s::timestamptz - g * interval '1 day' FROM generate_series(1, 364) g
""",
}

_SEQUENCES = [
    "messaging_device",
    "campaigns_campaign",
    "campaigns_category",
    "campaigns_contact",
    "messaging_message",
    "webhooks_webhookevent",
]


def seed(connection, scale: float, *, now: datetime, say=print) -> dict:
    """Fill a freshly migrated database as of `now` (every row's time is relative to it);
    returns the seconds each step took."""
    params = {**sizes(scale), "now": now}
    params["per_campaign"] = (params["message_1"] - params["csv_recipients"]) // (CAMPAIGNS - 1)
    took = {}
    # Migrations may leave a default device or category behind: the seed gives every id itself.
    tables = "messaging_device, campaigns_campaign, campaigns_category, campaigns_contact"
    connection.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
    for step, sql in _SQL.items():
        started = time.monotonic()
        connection.execute(sql, params)
        took[step] = round(time.monotonic() - started, 1)
        say(f"  seeded {step} in {took[step]} s")
    for table in _SEQUENCES:
        last = f"(SELECT max(id) FROM {table})"
        connection.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), {last})")
    started = time.monotonic()
    connection.execute("VACUUM (ANALYZE)")
    took["vacuum_analyze"] = round(time.monotonic() - started, 1)
    return took
