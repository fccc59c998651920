"""Launching a campaign, and pausing, resuming and cancelling it.

`campaign_launch` turns a draft into a sending (or scheduled) campaign. Under a lock on
the campaign row, one INSERT … SELECT creates every Message 1, its SQL rendering the
text; a recipient missing a variable makes that statement fail, and a campaign larger
than today's quota is refused after it, so either way nothing is kept. No contact is
loaded into Python: launch time and memory stay flat whatever the audience
(bench/launch.py). `launch_preview` computes what the confirmation page and the command
show (who is skipped and why, variables, quota, finish time, a sample) and explains
refusals.

Refusals are typed (`CampaignRefused` and subclasses), each with a machine-readable
`code`, an `http_status` for the API and a human message for the operator.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime

from django.db import IntegrityError, connection, transaction
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from campaigns.models import Campaign, CampaignStatus
from campaigns.rendering import BUILTIN_VARIABLES, VARIABLE, variables_in
from config import clock
from messaging import pacing
from messaging.claims import device_policy, device_snapshot, device_state
from messaging.dispatch import sender_enqueue
from messaging.models import CANCELLED_WITH_CAMPAIGN, Message, MessageKind, MessageStatus

logger = logging.getLogger(__name__)


# --- Refusals ---------------------------------------------------------------------------------


class CampaignRefused(Exception):
    """An operator's request on a campaign that cannot be done: `message` says why, `code`
    says it to programs, and each fact (keyword argument) is also an attribute."""

    code = "refused"
    http_status = 409  # what the API answers

    def __init__(self, message: str, **facts):
        super().__init__(message)
        self.message, self.facts = message, facts
        for name, value in facts.items():
            setattr(self, name, value)

    def as_dict(self) -> dict:
        facts = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in self.facts.items()}
        return {"code": self.code, "detail": self.message, **facts}


class LaunchRefused(CampaignRefused):
    code = "launch_refused"


class AlreadyLaunched(LaunchRefused):
    code = "already_launched"


class NoRecipients(LaunchRefused):
    code, http_status = "no_recipients", 400


class UnknownVariables(LaunchRefused):
    """`variables`: names no recipient has, most likely a typo in the text."""

    code, http_status = "unknown_variable", 400


class MissingVariables(LaunchRefused):
    """`missing`: {variable: recipients without it}, for variables with no fallback."""

    code, http_status = "missing_variables", 400


class TemplateNotPersonalisable(LaunchRefused):
    code, http_status = "template_variables_not_personalisable", 400


class DeviceCannotSend(LaunchRefused):
    code = "device_cannot_send"


class QuotaExceeded(LaunchRefused):
    """More recipients than the device may still send today; `allow_multi_day` accepts it.

    Facts: recipients, remaining_today, days_needed, estimated_finish.
    """

    code, http_status = "quota_exceeded", 429


class StatusRefused(CampaignRefused):
    """Pause, resume or cancel asked of a campaign whose status does not allow it."""

    code = "invalid_status"


# --- Quota and finish time ------------------------------------------------------------------


@dataclass(frozen=True)
class Pace:
    """The device's room for Message 1 on the start day, and when the campaign would end."""

    start: datetime
    daily_allowance: int  # Message 1 a day on this device, the Message 2 reserve set aside
    remaining_today: int  # Message 1 the start day still allows, after queued_ahead
    queued_ahead: int  # pending Message 1 of other campaigns on the same device
    estimated_finish: datetime | None  # None when the device may send no Message 1 at all
    days_needed: int | None  # UTC days from the start to the estimated finish, both counted
    device_halted: bool

    @property
    def scheduled(self) -> bool:
        return self.start > clock.now()

    def refusal(self, *, campaign: Campaign, recipients: int, allow_multi_day: bool) -> LaunchRefused | None:
        if self.daily_allowance == 0:
            return DeviceCannotSend(
                _("Device “%(device)s” may send no Message 1 at all: raise its daily limit.")
                % {"device": campaign.device}
            )
        if allow_multi_day or recipients <= self.remaining_today:
            return None
        facts = {"remaining_today": self.remaining_today, "days_needed": self.days_needed}
        facts.update(recipients=recipients, estimated_finish=self.estimated_finish)
        return QuotaExceeded(_quota_message(self, recipients), **facts)


def _quota_message(pace: Pace, recipients: int) -> str:
    return _(
        "The campaign has %(recipients)d recipients but only %(remaining)d Message 1 can still be "
        "sent on %(day)s (%(allowance)d a day on this device, the follow-up reserve set aside; "
        "%(queued)d already queued by other campaigns). It needs %(days)d days and would finish "
        "around %(finish)s. Accept sending over several days to launch it anyway."
    ) % {
        "recipients": recipients,
        "remaining": pace.remaining_today,
        "day": pace.start.date().isoformat(),
        "allowance": pace.daily_allowance,
        "queued": pace.queued_ahead,
        "days": pace.days_needed,
        "finish": format_time(pace.estimated_finish),
    }


def _pace(campaign: Campaign, *, recipients: int, now: datetime) -> Pace:
    """Pending Message 1s of the device's other live campaigns go first (lower ids), so they
    count against the room and the estimate alike."""
    start = _start(campaign, now)
    device = device_snapshot(campaign.device_id, now)
    policy, state = device_policy(device), device_state(device, now)
    allowance, queued = policy.allowance(pacing.Kind.MESSAGE_1), _queued_ahead(campaign)
    room = pacing.pacing_remaining_today(policy=policy, state=state, now=start, kind=pacing.Kind.MESSAGE_1)
    finish, days = None, None
    if allowance > 0:
        estimate = {"policy": policy, "state": state, "now": start, "message_1": queued + recipients}
        finish = pacing.pacing_estimate_finish(**estimate)
        days = (finish.date() - start.date()).days + 1
    return Pace(start, allowance, max(room - queued, 0), queued, finish, days, device.halted_at is not None)


def _start(campaign: Campaign, now: datetime) -> datetime:
    """When sending begins: the campaign's start time, or now if it is empty or past."""
    return max(campaign.starts_at or now, now)


def _queued_ahead(campaign: Campaign) -> int:
    live = (CampaignStatus.SENDING, CampaignStatus.SCHEDULED)
    pending = Message.objects.filter(kind=MessageKind.MESSAGE_1, status=MessageStatus.PENDING)
    on_device = pending.filter(device_id=campaign.device_id, campaign__status__in=live)
    return on_device.exclude(campaign_id=campaign.pk).count()


def format_time(moment: datetime) -> str:
    # Quotas belong to UTC days, so times are shown in UTC too.
    return moment.strftime("%Y-%m-%d %H:%M UTC")


# --- Preview ------------------------------------------------------------------------------------


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


@dataclass(frozen=True)
class LaunchPreview:
    """Everything the operator is told before a launch; `refusals` lists what blocks it."""

    campaign: Campaign
    recipients: int
    memberships: int  # (contact, category) pairs over the campaign's categories
    distinct_contacts: int
    opted_out: int
    invalid: int
    variables: tuple[VariableCheck, ...]
    template_variables: tuple[str, ...]  # {{ }} variables in Message 1's template: unsupported
    pace: Pace
    sample: Sample | None = None

    @property
    def duplicates(self) -> int:
        return self.memberships - self.distinct_contacts

    @property
    def missing_without_fallback(self) -> dict[str, int]:
        return {v.name: v.missing for v in self.variables if v.missing and v.fallback is None}

    @property
    def unknown_variables(self) -> list[str]:
        """Variables no recipient has, not built in and with no fallback: a typo, most likely.

        With a fallback the operator chose what everyone gets, so that is not an error."""
        unknown = (v for v in self.variables if v.name not in BUILTIN_VARIABLES and v.fallback is None)
        return [v.name for v in unknown if self.recipients and v.missing == self.recipients]

    def refusals(self, *, allow_multi_day: bool = False) -> list[LaunchRefused]:
        """Every reason the launch would be refused, the most fundamental first."""
        found = [
            _status_refusal(self.campaign),
            _audience_refusal(self),
            _variables_refusal(self),
            _template_refusal(self.template_variables),
            self.pace.refusal(
                campaign=self.campaign, recipients=self.recipients, allow_multi_day=allow_multi_day
            ),
        ]
        return [refusal for refusal in found if refusal is not None]

    def check(self, *, allow_multi_day: bool = False) -> None:
        refusals = self.refusals(allow_multi_day=allow_multi_day)
        if refusals:
            raise refusals[0]


def launch_preview(*, campaign: Campaign, now: datetime | None = None, sample: bool = True) -> LaunchPreview:
    """What launching `campaign` now would do: audience, variables, quota and finish time."""
    now = now or clock.now()
    counts = _audience_counts(campaign)
    return LaunchPreview(
        campaign=campaign,
        **counts,
        template_variables=tuple(_template_variables(campaign)),
        pace=_pace(campaign, recipients=counts["recipients"], now=now),
        sample=_sample(campaign) if sample else None,
    )


# --- Launch ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LaunchResult:
    campaign: Campaign
    messages_created: int
    pace: Pace


def launched_message(result: LaunchResult) -> str:
    """What the operator is told once a launch went through (admin and operator pages)."""
    facts = {
        "name": result.campaign.name,
        "count": result.messages_created,
        "start": format_time(result.pace.start),
        "finish": format_time(result.pace.estimated_finish),
    }
    if result.campaign.status == CampaignStatus.SCHEDULED:
        return (
            _(
                "Campaign “%(name)s” scheduled for %(start)s: %(count)d Message 1 queued, "
                "estimated finish %(finish)s."
            )
            % facts
        )
    return _("Campaign “%(name)s” launched: %(count)d Message 1 queued, estimated finish %(finish)s.") % facts


@transaction.atomic
def campaign_launch(*, campaign: Campaign, by=None, allow_multi_day: bool = False) -> LaunchResult:
    """Launch a draft: one Message 1 per eligible contact, then sending or scheduled.

    Raises a `LaunchRefused`, changing nothing, when it cannot. The campaign row stays
    locked until commit, so a second launch waits, then finds it launched. The audience is
    read once, by the insert itself: the counts of `launch_preview` are only computed to
    explain a refusal, and a quota refusal takes the inserted rows back.
    """
    campaign = _locked(campaign.pk)
    now = clock.now()
    _raise(_status_refusal(campaign) or _template_refusal(_template_variables(campaign)))
    created = _message_1_insert_checked(campaign, now=now)
    pace = _pace(campaign, recipients=created, now=now)
    # Raised inside the atomic block, a refusal takes the new rows back with it.
    _raise(pace.refusal(campaign=campaign, recipients=created, allow_multi_day=allow_multi_day))
    _mark_launched(campaign, by=by, scheduled=pace.start > now)
    logger.info("campaign %s launched by %s: %d Message 1, %s", campaign.pk, by, created, campaign.status)
    return LaunchResult(campaign, created, pace)


def _raise(refusal: LaunchRefused | None) -> None:
    if refusal is not None:
        raise refusal


def _locked(campaign_id: int) -> Campaign:
    return Campaign.objects.select_for_update().select_related("device").get(pk=campaign_id)


def _message_1_insert_checked(campaign: Campaign, *, now: datetime) -> int:
    """The insert; a recipient missing a variable, or no recipient at all, is a refusal."""
    start = _start(campaign, now)
    try:
        with transaction.atomic():
            created = message_1_insert(campaign=campaign, start=start, now=now)
    except IntegrityError as error:
        if getattr(error.__cause__, "sqlstate", None) != _NOT_NULL_VIOLATION:
            raise
        raise _explained(campaign, now) from error
    if not created:
        raise _explained(campaign, now)
    return created


def _explained(campaign: Campaign, now: datetime) -> LaunchRefused:
    """Why the insert refused (a NULL content) or found nobody, from a fresh preview."""
    preview = launch_preview(campaign=campaign, now=now, sample=False)
    found = _audience_refusal(preview) or _variables_refusal(preview)
    return found or LaunchRefused(_("The contacts changed during the launch: please try again."))


def _mark_launched(campaign: Campaign, *, by, scheduled: bool) -> None:
    campaign.transition_to(CampaignStatus.SCHEDULED if scheduled else CampaignStatus.SENDING)
    campaign.launched_by = by if getattr(by, "pk", None) else None
    campaign.save(update_fields=["status", "launched_at", "launched_by", "updated_at"])
    if not scheduled:
        sender_enqueue(campaign.device_id)


# --- SQL ---------------------------------------------------------------------------------------

# Distinct by construction: `IN` is a semi-join, so a contact in three categories is one row.
# The categories come as an array of ids, not as a join on the campaign's categories: with
# the ids in hand the planner estimates the audience from its statistics (it guessed ~500
# rows for 84,000 through the join) and picks a merge semi-join in contact order, so the
# insert below needs no sort (bench/launch.py).
_AUDIENCE = """
campaigns_contact c WHERE c.id IN (
  SELECT cc.contact_id FROM campaigns_contact_categories cc
  WHERE cc.category_id = ANY(%(categories)s::bigint[]))
"""
_NOT_NULL_VIOLATION = "23502"
_ELIGIBLE = "c.opted_out_at IS NULL AND c.whatsapp_status <> 'invalid'"

# Statements are assembled from the constants above and from `_SqlText`, which puts every
# operator-written value (text, variable names, fallbacks) in parameters.
_COUNTS_SQL = """
SELECT
  (SELECT count(*) FROM campaigns_contact_categories cc
   WHERE cc.category_id = ANY(%(categories)s::bigint[])),
  count(*),
  count(*) FILTER (WHERE c.opted_out_at IS NOT NULL),
  count(*) FILTER (WHERE c.opted_out_at IS NULL AND c.whatsapp_status = 'invalid'),
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
INSERT INTO messaging_message
  (campaign_id, contact_id, device_id, kind, content, reference, next_attempt_at, created_at, updated_at)
SELECT %(campaign)s, c.id, %(device)s, %(kind)s, {content},
  (%(reference_high)s || to_hex(%(reference_low)s::bigint | c.id))::uuid, %(start)s, %(now)s, %(now)s
FROM {audience} AND {eligible} AND NOT EXISTS (
  SELECT 1 FROM messaging_message m
  WHERE m.campaign_id = %(campaign)s AND m.contact_id = c.id AND m.kind = %(kind)s)
ORDER BY c.id
"""
_SAMPLE_SQL = """
SELECT c.id, c.phone, c.first_name, c.name, {message_1}, {message_2}
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


def message_1_insert(*, campaign: Campaign, start: datetime, now: datetime) -> int:
    """One INSERT … SELECT of every eligible recipient's Message 1; returns how many were new.

    A recipient missing a variable of either message (no fallback) gets a NULL content,
    which the NOT NULL column refuses: the statement fails rather than send a blank.
    Running it again adds nothing (contacts that have it are skipped; the unique
    campaign/contact/kind constraint refuses a duplicate whatever happens). A template
    campaign's messages have empty content: the sender sends the campaign's template.
    """
    sql = _SqlText(campaign)
    message_1 = sql.param("") if campaign.message_1_template_name else sql.rendered(campaign.message_1_text)
    content = f"CASE WHEN {sql.resolvable(_campaign_variables(campaign))} THEN {message_1} END"
    sql.params.update(device=campaign.device_id, kind=MessageKind.MESSAGE_1, start=start, now=now)
    sql.params.update(_reference_parts(campaign, now))
    statement = _INSERT_SQL.format(content=content, audience=_AUDIENCE, eligible=_ELIGIBLE)
    with connection.cursor() as cursor:
        cursor.execute(statement, sql.params)
        return cursor.rowcount


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


def _campaign_variables(campaign: Campaign) -> list[str]:
    texts = [campaign.message_2_text]
    if not campaign.message_1_template_name:
        texts.insert(0, campaign.message_1_text)
    return list(dict.fromkeys(name for text in texts for name in variables_in(text)))


def _template_variables(campaign: Campaign) -> list[str]:
    if not campaign.message_1_template_name:
        return []
    values = campaign.message_1_template_variables or []
    values = values.values() if isinstance(values, dict) else values
    return list(dict.fromkeys(name for value in values for name in variables_in(str(value))))


def _audience_counts(campaign: Campaign) -> dict:
    """One scan of the audience: sizes, why contacts are skipped, who lacks each variable."""
    sql, names = _SqlText(campaign), _campaign_variables(campaign)
    missing = "".join(f",\n  count(*) FILTER (WHERE {_ELIGIBLE} AND {sql.value(n)} IS NULL)" for n in names)
    statement = _COUNTS_SQL.format(eligible=_ELIGIBLE, missing=missing, audience=_AUDIENCE)
    with connection.cursor() as cursor:
        cursor.execute(statement, sql.params)
        memberships, distinct, opted_out, invalid, recipients, *lacking = cursor.fetchone()
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
        "variables": checks,
    }


def _sample(campaign: Campaign) -> Sample | None:
    """Both messages as the first recipient would get them."""
    sql = _SqlText(campaign)
    message_1 = sql.param(_("(WhatsApp template %(name)s)") % {"name": campaign.message_1_template_name})
    if not campaign.message_1_template_name:
        message_1 = sql.rendered(campaign.message_1_text, keep_unresolved=True)
    message_2 = sql.rendered(campaign.message_2_text, keep_unresolved=True)
    statement = _SAMPLE_SQL.format(
        message_1=message_1, message_2=message_2, audience=_AUDIENCE, eligible=_ELIGIBLE
    )
    with connection.cursor() as cursor:
        cursor.execute(statement, sql.params)
        row = cursor.fetchone()
    if row is None:
        return None
    contact_id, phone, first_name, name, text_1, text_2 = row
    label = " ".join(part for part in (first_name, name) if part)
    return Sample(contact_id, f"{label} ({phone})" if label else phone, text_1, text_2)


# --- Refusal checks (each returns a refusal or None) ------------------------------------------


def _status_refusal(campaign: Campaign) -> LaunchRefused | None:
    if campaign.status == CampaignStatus.DRAFT:
        return None
    return AlreadyLaunched(
        _("Campaign “%(name)s” was already launched: it is %(status)s.")
        % {"name": campaign.name, "status": campaign.get_status_display()}
    )


def _audience_refusal(preview: LaunchPreview) -> LaunchRefused | None:
    if preview.recipients:
        return None
    if not preview.distinct_contacts:
        return NoRecipients(_("The campaign's categories have no contacts."))
    return NoRecipients(
        _("None of the %(n)d contacts can receive it: %(out)d opted out, %(bad)d invalid numbers.")
        % {"n": preview.distinct_contacts, "out": preview.opted_out, "bad": preview.invalid}
    )


def _variables_refusal(preview: LaunchPreview) -> LaunchRefused | None:
    if preview.unknown_variables:
        return _unknown_refusal(preview.unknown_variables)
    missing = preview.missing_without_fallback
    return _missing_refusal(missing) if missing else None


def _unknown_refusal(unknown: list[str]) -> UnknownVariables:
    message = ngettext(
        "No recipient has the variable %(names)s: check its spelling, or remove it.",
        "No recipient has the variables %(names)s: check their spelling, or remove them.",
        len(unknown),
    )
    return UnknownVariables(message % {"names": _braced(unknown)}, variables=unknown)


def _missing_refusal(missing: dict[str, int]) -> MissingVariables:
    details = "; ".join(
        ngettext("%(n)d recipient has no %(name)s", "%(n)d recipients have no %(name)s", count)
        % {"n": count, "name": _braced([name])}
        for name, count in missing.items()
    )
    message = _("%(details)s. Set a fallback for it in the campaign, or complete the contacts.")
    return MissingVariables(message % {"details": details}, missing=missing)


def _braced(names) -> str:
    return ", ".join(f"{{{{ {name} }}}}" for name in names)


def _template_refusal(names) -> LaunchRefused | None:
    if not names:
        return None
    return TemplateNotPersonalisable(
        _(
            "WhatsApp template variables are sent as written, so %(names)s cannot be "
            "personalised: use fixed values."
        )
        % {"names": _braced(names)}
    )


# --- Pause, resume, cancel --------------------------------------------------------------------


@transaction.atomic
def campaign_pause(*, campaign: Campaign, by=None) -> Campaign:
    """Stop claiming the campaign's messages; a send already in flight completes."""
    return _campaign_move(campaign, CampaignStatus.PAUSED, allowed_from={CampaignStatus.SENDING}, by=by)


@transaction.atomic
def campaign_resume(*, campaign: Campaign, by=None) -> Campaign:
    """Carry on where the pause left off: the same pending messages, none twice."""
    campaign = _campaign_move(campaign, CampaignStatus.SENDING, allowed_from={CampaignStatus.PAUSED}, by=by)
    sender_enqueue(campaign.device_id)
    return campaign


@transaction.atomic
def campaign_cancel(*, campaign: Campaign, by=None) -> int:
    """Cancel the campaign and its pending messages of both kinds; returns how many.

    Sent messages keep their state; `sending` and `unknown` ones are left to finish or be
    reconciled, since only Wassenger knows whether they went out.
    """
    live = set(CampaignStatus) - {CampaignStatus.COMPLETED, CampaignStatus.CANCELLED}
    campaign = _campaign_move(campaign, CampaignStatus.CANCELLED, allowed_from=live, by=by)
    pending = Message.objects.filter(campaign=campaign, status=MessageStatus.PENDING)
    changes = {"status": MessageStatus.CANCELLED, "last_error": CANCELLED_WITH_CAMPAIGN}
    return pending.update(**changes, updated_at=clock.now())


def _campaign_move(campaign: Campaign, status: str, *, allowed_from: set, by) -> Campaign:
    campaign = _locked(campaign.pk)
    if campaign.status not in allowed_from or not campaign.can_transition_to(status):
        raise StatusRefused(
            _("Campaign “%(name)s” is %(current)s: it cannot be %(wanted)s.")
            % {"name": campaign.name, "current": campaign.get_status_display(), "wanted": _VERBS[status]}
        )
    campaign.transition_to(status)
    campaign.save(update_fields=["status", "launched_at", "finished_at", "updated_at"])
    logger.info("campaign %s %s by %s", campaign.pk, status, by)
    return campaign


_VERBS = {
    CampaignStatus.PAUSED: gettext_lazy("paused"),
    CampaignStatus.SENDING: gettext_lazy("resumed"),
    CampaignStatus.CANCELLED: gettext_lazy("cancelled"),
}
