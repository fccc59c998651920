"""The launch's SQL: who the audience is, and Message 1 rendered and inserted in the database.

Nothing here loads a contact into Python: one INSERT … SELECT creates every Message 1
(`message_1_insert`), one scan counts the audience and who lacks each variable
(`audience_counts`), and one row gives the preview's sample (`audience_sample`), so launch
time and memory stay flat whatever the audience (bench/launch.py). `_SqlText` renders the
campaign's texts as SQL expressions, every operator-written value in parameters. Tables
are named through their models' `_meta.db_table`.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection
from django.utils.translation import gettext as _

from campaigns.models import Campaign, CampaignStatus, Contact
from campaigns.rendering import BUILTIN_VARIABLES, VARIABLE, message_1_variants, variables_in
from config import clock
from messaging.models import Message, MessageKind

_TABLES = {
    "campaigns": Campaign._meta.db_table,
    "contacts": Contact._meta.db_table,
    "memberships": Contact.categories.through._meta.db_table,
    "messages": Message._meta.db_table,
}


@dataclass(frozen=True)
class VariableCheck:
    name: str
    missing: int  # recipients without a value for it
    fallback: str | None


@dataclass(frozen=True)
class Sample:
    contact_id: int
    contact: str
    message_1: str  # a variable without value nor fallback shows as written, {{ name }}
    message_2: str
    message_1_variants: tuple[str, ...] = ()  # every variant for this contact, when there are several


# Distinct by construction: `IN` is a semi-join, so a contact in three categories is one row.
# The categories come as an array of ids, not as a join on the campaign's categories: with
# the ids in hand the planner estimates the audience from its statistics (it guessed ~500
# rows for 84,000 through the join) and picks a merge semi-join in contact order, so the
# insert below needs no sort (bench/launch.py).
_AUDIENCE_TEMPLATE = """
{contacts} c WHERE c.id IN (
  SELECT cc.contact_id FROM {memberships} cc
  WHERE cc.category_id = ANY(%(categories)s::bigint[]))
"""
_AUDIENCE = _AUDIENCE_TEMPLATE.format(**_TABLES)
NOT_NULL_VIOLATION = "23502"
_ELIGIBLE = "c.opted_out_at IS NULL AND c.whatsapp_status <> 'invalid'"

# Statements are assembled from the constants above and from `_SqlText`, which puts every
# operator-written value (text, variable names, fallbacks) in parameters.
_COUNTS_SQL = """
SELECT
  (SELECT count(*) FROM {memberships} cc
   WHERE cc.category_id = ANY(%(categories)s::bigint[])),
  count(*),
  count(*) FILTER (WHERE c.opted_out_at IS NOT NULL),
  count(*) FILTER (WHERE c.opted_out_at IS NULL AND c.whatsapp_status = 'invalid'),
  count(*) FILTER (WHERE {base} AND ({recent})),
  count(*) FILTER (WHERE {base} AND NOT ({recent}) AND ({busy})),
  count(*) FILTER (WHERE {eligible}){missing}
FROM {audience}
"""
# Ordered by contact so that the new index entries go in order, and sending follows it.
# Contacts that already have this Message 1 are left out by NOT EXISTS rather than by
# ON CONFLICT DO NOTHING: a speculative insertion probes the unique index and writes a
# confirmation record for every row, about a tenth of the statement. The unique
# (campaign, contact, kind) constraint still refuses a duplicate, and the campaign row,
# locked for the whole launch, keeps any other launch of it from inserting meanwhile.
_INSERT_SQL = """
INSERT INTO {messages}
  (campaign_id, contact_id, device_id, kind, content, variant, reference, next_attempt_at,
   created_at, updated_at)
SELECT %(campaign)s, c.id, {device}, %(kind)s, {content}, {variant},
  (%(reference_high)s || to_hex(%(reference_low)s::bigint | c.id))::uuid, %(start)s, %(now)s, %(now)s
FROM {source}
ORDER BY c.id
"""
_NEW_RECIPIENTS = """{audience} AND {eligible} AND NOT EXISTS (
  SELECT 1 FROM {messages} m
  WHERE m.campaign_id = %(campaign)s AND m.contact_id = c.id AND m.kind = %(kind)s)"""
# Over several devices, each takes the next block of recipients in contact order (its
# share, campaigns/launch.py); one window over the ordered audience numbers them.
_NUMBERED_RECIPIENTS = """(
  SELECT c.*, row_number() OVER (ORDER BY c.id) AS recipient_number FROM {recipients}) c"""
_ELIGIBLE_COUNT_SQL = "SELECT count(*) FROM {audience} AND {eligible}"
_PER_DEVICE_SQL = "SELECT device_id, count(*) FROM {messages} WHERE campaign_id = %s AND kind = %s GROUP BY 1"
_SAMPLE_SQL = """
SELECT c.id, c.phone, c.first_name, c.name, {message_1}, {message_2}{variants}
FROM {audience} AND {eligible} ORDER BY c.id LIMIT 1
"""


class _SqlText:
    """Builds SQL expressions over a contact row `c`, collecting their parameters."""

    def __init__(self, campaign: Campaign):
        self.campaign = campaign
        self.fallbacks = campaign.variable_fallbacks or {}
        categories = list(campaign.categories.values_list("pk", flat=True))
        self.params: dict = {"campaign": campaign.pk, "categories": categories}

    def param(self, value) -> str:
        name = f"p{len(self.params)}"
        self.params[name] = value
        return f"%({name})s::text"

    def value(self, variable: str) -> str:
        """The contact's value, NULL when empty: its built-in field first, as `rendering` does."""
        own = f"NULLIF(c.fields ->> {self.param(variable)}, '')"
        if variable in BUILTIN_VARIABLES:
            return f"COALESCE(NULLIF(c.{variable}, ''), {own})"
        return own

    def rendered(self, text: str, *, keep_unresolved: bool = False) -> str:
        """`text` with its variables replaced. A variable with no value and no fallback stays
        as written if `keep_unresolved`, else makes the whole text NULL."""
        parts, position = [], 0
        for match in VARIABLE.finditer(text):
            choices = [self.value(match.group(1))]
            if match.group(1) in self.fallbacks:
                choices.append(self.param(str(self.fallbacks[match.group(1)])))
            elif keep_unresolved:
                choices.append(self.param(match.group(0)))
            parts += [self.param(text[position : match.start()]), f"COALESCE({', '.join(choices)})"]
            position = match.end()
        return "(" + " || ".join([*parts, self.param(text[position:])]) + ")"

    def resolvable(self, names: list[str]) -> str:
        """True when the contact has a value for each of `names` that has no fallback."""
        needed = [name for name in names if name not in self.fallbacks]
        return " AND ".join(f"{self.value(name)} IS NOT NULL" for name in needed) or "TRUE"


def message_1_insert(
    *, campaign: Campaign, start: datetime, now: datetime, shares: dict | None = None
) -> int:
    """One INSERT … SELECT of every eligible recipient's Message 1; returns how many were new.

    `shares` gives each device (id → count) its block of recipients, in contact order; the
    last device takes any recipient beyond the counts (None: all on the campaign's first).

    A recipient missing a variable of either message (no fallback) gets a NULL content,
    which the NOT NULL column refuses: the statement fails rather than send a blank.
    Running it again adds nothing (contacts that have it are skipped; the unique
    campaign/contact/kind constraint refuses a duplicate whatever happens). A template
    campaign's messages have empty content: the sender sends the campaign's template.
    """
    sql = _SqlText(campaign)
    message_1, variant = _variant_choice(sql, campaign_message_1_variants(campaign))
    content = f"CASE WHEN {sql.resolvable(campaign_variables(campaign))} THEN {message_1} END"
    shares = shares or {campaign.device_ids()[0]: None}
    sql.params.update(kind=MessageKind.MESSAGE_1, start=start, now=now)
    sql.params.update(_reference_parts(campaign, now))
    recipients = _NEW_RECIPIENTS.format(audience=_AUDIENCE, eligible=_eligible(sql, now), **_TABLES)
    source = recipients if len(shares) == 1 else _NUMBERED_RECIPIENTS.format(recipients=recipients)
    device = _device_choice(shares)
    statement = _INSERT_SQL.format(content=content, variant=variant, device=device, source=source, **_TABLES)
    with connection.cursor() as cursor:
        cursor.execute(statement, sql.params)
        return cursor.rowcount


# The fatigue rules (a campaign's `fatigue_days` and `skip_other_campaigns`): contacts who got
# a Message 1 from any other campaign lately, and contacts of another campaign in progress, are
# skipped like opted-out ones. Each is a set of contact ids the planner builds once and hashes
# (a hashed subplan), not a probe per contact: with the probe a 100,000-contact launch ran 38%
# slower (bench/launch.py).
_RECENT_SQL = """c.id IN (
  SELECT r.contact_id FROM {messages} r WHERE r.kind = 'message_1'
    AND r.sent_at >= %(fatigue_since)s AND r.campaign_id <> %(campaign)s)"""
_BUSY_SQL = """c.id IN (
  SELECT b.contact_id FROM {messages} b JOIN {campaigns} k ON k.id = b.campaign_id
  WHERE b.kind = 'message_1' AND b.campaign_id <> %(campaign)s AND k.status = ANY(%(in_progress)s))"""
_IN_PROGRESS = [CampaignStatus.SCHEDULED, CampaignStatus.SENDING, CampaignStatus.PAUSED]


def _fatigue_skips(sql: _SqlText, now: datetime) -> tuple[str, str]:
    """SQL conditions on a contact `c`: (messaged lately, in another campaign); FALSE when off."""
    campaign, recent, busy = sql.campaign, "FALSE", "FALSE"
    if campaign.fatigue_days:
        sql.params["fatigue_since"] = now - timedelta(days=campaign.fatigue_days)
        recent = _RECENT_SQL.format(**_TABLES)
    if campaign.skip_other_campaigns:
        sql.params["in_progress"] = [str(status) for status in _IN_PROGRESS]
        busy = _BUSY_SQL.format(**_TABLES)
    return recent, busy


def _eligible(sql: _SqlText, now: datetime) -> str:
    return _eligible_without(*_fatigue_skips(sql, now))


def _eligible_without(recent: str, busy: str) -> str:
    return f"{_ELIGIBLE} AND NOT ({recent}) AND NOT ({busy})"


def campaign_message_1_variants(campaign: Campaign) -> list[str]:
    """Message 1's texts, one per variant ([""] for a template, which has none of its own)."""
    if campaign.message_1_template_name:
        return [""]
    return message_1_variants(campaign.message_1_text, campaign.message_1_variants)


def _variant_choice(sql: _SqlText, variants: list[str]) -> tuple[str, str]:
    """Message 1's SQL content and variant number. With several variants the recipients, in
    contact order, are dealt them in turn (1, 2, 3, 1, …): the counts are at most one apart,
    and the same audience always gets the same deal (`rendering.variant_counts`)."""
    if len(variants) == 1:
        return sql.rendered(variants[0]), "NULL"
    turn = f"((row_number() OVER (ORDER BY c.id) - 1) %% {len(variants)})"  # %% : a parameter style
    choices = " ".join(f"WHEN {number} THEN {sql.rendered(text)}" for number, text in enumerate(variants))
    return f"(CASE {turn} {choices} END)", f"{turn} + 1"


def _device_choice(shares: dict) -> str:
    """The device of each recipient: the blocks of `shares` (ids are integers, inlined)."""
    *firsts, last = shares.items()
    branches, upto = [], 0
    for device_id, count in firsts:
        upto += count
        branches.append(f"WHEN c.recipient_number <= {int(upto)} THEN {int(device_id)}")
    if not branches:
        return str(int(last[0]))
    return f"CASE {' '.join(branches)} ELSE {int(last[0])} END"


def eligible_count(campaign: Campaign, *, now: datetime) -> int:
    """How many recipients a launch would give a Message 1 at `now` (fatigue rules included)."""
    sql = _SqlText(campaign)
    statement = _ELIGIBLE_COUNT_SQL.format(audience=_AUDIENCE, eligible=_eligible(sql, now))
    with connection.cursor() as cursor:
        cursor.execute(statement, sql.params)
        return cursor.fetchone()[0]


def messages_per_device(campaign: Campaign) -> dict[int, int]:
    """{device id: Message 1s} of the campaign, as they are now."""
    with connection.cursor() as cursor:
        cursor.execute(_PER_DEVICE_SQL.format(**_TABLES), [campaign.pk, MessageKind.MESSAGE_1])
        return dict(cursor.fetchall())


def _reference_parts(campaign: Campaign, now: datetime) -> dict:
    """The launch's references: time-ordered UUIDs (RFC 9562 version 7), not random ones.

    `gen_random_uuid()`, the column's default, reads /dev/urandom once per row on the
    embedded PostgreSQL (built without OpenSSL), and random keys land all over the unique
    index on `reference`; these go in order at its end. Layout: the launch's millisecond
    (48 bits), version 7, 12 random bits; variant 10, the campaign id's low 20 bits, the
    contact id (42 bits, so unique within the launch). Two launches collide only with the
    same millisecond, random bits and campaign id modulo 2^20, and the unique index on
    `reference` refuses that rather than mix two messages up.
    """
    high = int(now.timestamp() * 1000) << 16 | 0x7 << 12 | secrets.randbits(12)
    low = 0b10 << 62 | (campaign.pk & 0xFFFFF) << 42
    return {"reference_high": f"{high:016x}", "reference_low": low - (1 << 64)}  # as a signed bigint


def campaign_variables(campaign: Campaign) -> list[str]:
    texts = [campaign.message_2_text, campaign.opt_out_confirmation]
    if not campaign.message_1_template_name:
        texts[:0] = [campaign.message_1_text, *(campaign.message_1_variants or [])]
    return list(dict.fromkeys(name for text in texts for name in variables_in(text)))


def template_variables(campaign: Campaign) -> list[str]:
    if not campaign.message_1_template_name:
        return []
    values = campaign.message_1_template_variables or []
    values = values.values() if isinstance(values, dict) else values
    return list(dict.fromkeys(name for value in values for name in variables_in(str(value))))


def audience_counts(campaign: Campaign, *, now: datetime | None = None) -> dict:
    """One scan of the audience: sizes, why contacts are skipped, who lacks each variable."""
    sql, names = _SqlText(campaign), campaign_variables(campaign)
    recent, busy = _fatigue_skips(sql, now or clock.now())
    eligible = _eligible_without(recent, busy)
    missing = "".join(f",\n  count(*) FILTER (WHERE {eligible} AND {sql.value(n)} IS NULL)" for n in names)
    statement = _COUNTS_SQL.format(
        base=_ELIGIBLE,
        recent=recent,
        busy=busy,
        eligible=eligible,
        missing=missing,
        audience=_AUDIENCE,
        **_TABLES,
    )
    with connection.cursor() as cursor:
        cursor.execute(statement, sql.params)
        memberships, distinct, opted_out, invalid, fatigued, busy_elsewhere, recipients, *lacking = (
            cursor.fetchone()
        )
    checks = tuple(
        VariableCheck(name, count, str(sql.fallbacks[name]) if name in sql.fallbacks else None)
        for name, count in zip(names, lacking, strict=True)
    )
    return {
        "recipients": recipients,
        "memberships": memberships,
        "distinct_contacts": distinct,
        "opted_out": opted_out,
        "invalid": invalid,
        "recently_messaged": fatigued,
        "in_other_campaigns": busy_elsewhere,
        "variables": checks,
    }


def audience_sample(campaign: Campaign, *, now: datetime | None = None) -> Sample | None:
    """Both messages as the first recipient would get them."""
    sql = _SqlText(campaign)
    eligible = _eligible(sql, now or clock.now())
    message_1 = sql.param(_("(WhatsApp template %(name)s)") % {"name": campaign.message_1_template_name})
    variants = campaign_message_1_variants(campaign)
    if not campaign.message_1_template_name:
        message_1 = sql.rendered(variants[0], keep_unresolved=True)
    message_2 = sql.rendered(campaign.message_2_text, keep_unresolved=True)
    others = "".join(
        f", {sql.rendered(text, keep_unresolved=True)}" for text in variants if len(variants) > 1
    )
    statement = _SAMPLE_SQL.format(
        message_1=message_1, message_2=message_2, variants=others, audience=_AUDIENCE, eligible=eligible
    )
    with connection.cursor() as cursor:
        cursor.execute(statement, sql.params)
        row = cursor.fetchone()
    if row is None:
        return None
    contact_id, phone, first_name, name, text_1, text_2, *each_variant = row
    label = " ".join(part for part in (first_name, name) if part)
    return Sample(contact_id, f"{label} ({phone})" if label else phone, text_1, text_2, tuple(each_variant))
