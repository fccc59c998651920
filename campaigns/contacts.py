"""The contact rules every entry point calls: opt-out, not on WhatsApp, and the one upsert.

- `contact_opt_out`: a STOP reply (webhook processing), the API's `opt-out` action and the
  admin's "Opt out" action. The contact is marked and its pending messages are cancelled at
  once, in every campaign (the dispatcher's sweep only catches a send that was in flight).
- `contact_whatsapp_record` / `contact_mark_not_on_whatsapp`: a number check (verification),
  a send Wassenger refused as an invalid number (the send engine) and a failure receipt saying
  so (webhook processing). A contact not on WhatsApp is skipped by every later launch.
- `contacts_upsert`: the CSV import, the API's bulk action and the demo. One set-based
  INSERT … ON CONFLICT (phone) DO UPDATE per call, whatever the number of rows
  (bench/import.py), and one INSERT of the memberships. It merges: a non-empty name, first
  name or field replaces the stored one, an empty one never erases what an operator typed,
  and fields not given are kept; categories are added, never removed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from django.db import connection, transaction

from campaigns.models import Contact, WhatsAppStatus
from config import clock
from config.logging import phone_mask
from messaging.messages import messages_cancel_pending, messages_stopped_by_opt_out
from messaging.models import CANCELLED_OPTED_OUT, Message

logger = logging.getLogger(__name__)


# --- Opt-out --------------------------------------------------------------------------------------


@transaction.atomic
def contact_opt_out(*, contact: Contact) -> int:
    """Opt the contact out and cancel every message still waiting for it, in any campaign.

    Returns how many messages were cancelled. Opting out twice keeps the first date.
    """
    now = clock.now()
    if contact.opted_out_at is None:
        contact.opted_out_at = now
        contact.save(update_fields=["opted_out_at", "updated_at"])
    waiting = messages_stopped_by_opt_out(Message.objects.filter(contact=contact))
    cancelled = messages_cancel_pending(messages=waiting, reason=CANCELLED_OPTED_OUT, now=now)
    logger.info(
        "contact %s opted out (%s); %d message(s) cancelled", contact.pk, phone_mask(contact.phone), cancelled
    )
    return cancelled


# --- On WhatsApp or not ---------------------------------------------------------------------------


def contact_whatsapp_record(*, contact_id: int, on_whatsapp: bool, now: datetime | None = None) -> str:
    """Store whether the contact's number is on WhatsApp, and when that was learnt."""
    now = now or clock.now()
    status = WhatsAppStatus.VALID if on_whatsapp else WhatsAppStatus.INVALID
    changes = {"whatsapp_status": status, "whatsapp_checked_at": now, "updated_at": now}
    Contact.objects.filter(pk=contact_id).update(**changes)
    return status


def contact_mark_not_on_whatsapp(*, contact_id: int, now: datetime | None = None) -> None:
    """Wassenger said the number is not on WhatsApp: no later launch will include it."""
    contact_whatsapp_record(contact_id=contact_id, on_whatsapp=False, now=now)


# --- Upsert ---------------------------------------------------------------------------------------


class ContactValues(Protocol):
    """What an upserted row gives (the import's parsed rows have these attributes too)."""

    phone: str  # E.164, already normalised
    name: str
    first_name: str
    fields: dict


@dataclass(frozen=True)
class ContactRow:
    phone: str
    name: str = ""
    first_name: str = ""
    fields: dict = field(default_factory=dict)


# `xmax = 0` is true only for a row this statement inserted, not one it updated.
_UPSERT = """
INSERT INTO {contacts}
  (phone, name, first_name, fields, whatsapp_status, created_at, updated_at)
SELECT u.phone, u.name, u.first_name, u.fields::jsonb, %(unknown)s, %(now)s, %(now)s
FROM unnest(%(phones)s::text[], %(names)s::text[], %(first_names)s::text[], %(fields)s::text[])
  AS u(phone, name, first_name, fields)
ON CONFLICT (phone) DO UPDATE SET
  name = COALESCE(NULLIF(EXCLUDED.name, ''), {contacts}.name),
  first_name = COALESCE(NULLIF(EXCLUDED.first_name, ''), {contacts}.first_name),
  fields = {contacts}.fields || EXCLUDED.fields,
  updated_at = EXCLUDED.updated_at
RETURNING id, phone, (xmax = 0)
"""
_MEMBERSHIP = """
INSERT INTO {memberships} (contact_id, category_id)
SELECT contact_id, category_id
FROM unnest(%(contacts)s::bigint[]) AS contact_id, unnest(%(categories)s::bigint[]) AS category_id
ON CONFLICT DO NOTHING
"""
_UPSERT_SQL = _UPSERT.format(contacts=Contact._meta.db_table)
_MEMBERSHIP_SQL = _MEMBERSHIP.format(memberships=Contact.categories.through._meta.db_table)


def contacts_upsert(*, rows: Sequence[ContactValues], category_ids: Sequence[int] = ()) -> list[tuple]:
    """Create or merge `rows` (distinct phones) and add each to every one of `category_ids`.

    Returns (id, phone, created) for each row. Call it inside a transaction to make a batch
    all or nothing.
    """
    if not rows:
        return []
    with connection.cursor() as cursor:
        cursor.execute(_UPSERT_SQL, _upsert_params(rows))
        written = cursor.fetchall()
        if category_ids:
            ids = [row[0] for row in written]
            cursor.execute(_MEMBERSHIP_SQL, {"contacts": ids, "categories": list(category_ids)})
    return written


def _upsert_params(rows: Sequence[ContactValues]) -> dict:
    return {
        "now": clock.now(),
        "unknown": WhatsAppStatus.UNKNOWN.value,
        "phones": [row.phone for row in rows],
        "names": [row.name for row in rows],
        "first_names": [row.first_name for row in rows],
        # An empty field is no value: it must not erase the stored one.
        "fields": [json.dumps(_non_empty(row.fields), ensure_ascii=False) for row in rows],
    }


def _non_empty(fields: dict) -> dict:
    return {key: value for key, value in fields.items() if value}
