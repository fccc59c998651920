"""Devices: the Wassenger numbers Relance sends from, and the one home of halt and resume.

A device is halted by the sender (a bad token, a banned number) and by its Wassenger session
going offline (webhook processing); it is resumed by the operator (admin, API) and by its
session coming back online. Each of them calls `device_halt` / `device_resume`, which write
the halt as one conditional UPDATE, so that two of them racing change it once.
"""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from config import clock
from messaging.models import Device

logger = logging.getLogger(__name__)


@transaction.atomic
def device_ensure_default() -> Device:
    """The default device, created on first run from the settings (idempotent).

    A default device without a Wassenger id (made while trying Relance on the sandbox)
    takes WASSENGER_DEVICE_ID once it is set: switching to the real Wassenger is then a
    matter of settings. An id already stored, say one an operator typed in the admin, is
    never replaced, nor is the id taken from a device that already has it.
    """
    default = Device.objects.filter(is_default=True).first()
    if default is None:
        default, _ = Device.objects.get_or_create(
            label="Default", defaults={"wassenger_id": settings.WASSENGER_DEVICE_ID}
        )
        default.is_default = True
        default.save(update_fields=["is_default"])
    configured = settings.WASSENGER_DEVICE_ID
    if (
        not default.wassenger_id
        and configured
        and not Device.objects.filter(wassenger_id=configured).exists()
    ):
        default.wassenger_id = configured
        default.save(update_fields=["wassenger_id"])
    return default


def device_halt(*, device_id: int, reason: str, now: datetime | None = None) -> bool:
    """Stop the device sending until it is resumed; False if it was already halted (the
    first reason is kept: it is the one the operator must act on)."""
    halted = Device.objects.filter(pk=device_id, halted_at__isnull=True).update(
        halted_at=now or clock.now(), halted_reason=reason
    )
    return bool(halted)


def device_resume(*, device: Device, halted_for: str = "") -> bool:
    """Clear a halt (after the operator fixed the token or reconnected the number) and start
    a sender; with `halted_for`, only a halt whose reason starts with it is cleared."""
    # Imported here: dispatch imports the send engine, which halts devices through this module.
    from messaging.dispatch import sender_enqueue

    halted = Device.objects.filter(pk=device.pk, halted_at__isnull=False)
    halted = halted.filter(halted_reason__startswith=halted_for)
    resumed = halted.update(halted_at=None, halted_reason="", resumed_at=clock.now())
    if resumed:
        sender_enqueue(device.pk)
    return bool(resumed)


# --- What Wassenger says of a device: its session, its status, its plan ---------------------------

SESSION_ONLINE = "online"
# A halt written from the session starts with this (untranslated, so that `online` finds it
# whatever the language): "session authorize: phone unlinked: scan the QR code again".
# Older halts ("session offline (timeout)") start with it too.
SESSION_HALT_PREFIX = "session "
# A halt written from the device's status at Wassenger: "device banned: number banned".
STATUS_HALT_PREFIX = "device "
# SPEC's `device.session.status` enum: only online can send; each other state says why not.
SESSION_REASONS = {
    "offline": _("phone offline: check that it is on and has internet"),
    "timeout": _("phone not answering Wassenger: check its internet connection"),
    "timeout_sync": _("phone not syncing: open WhatsApp on it"),
    "conflict": _("WhatsApp is open on another computer: close it, then reconnect in Wassenger"),
    "blocked": _("number banned by WhatsApp"),
    "error": _("session error at Wassenger: reconnect the number in Wassenger"),
    "authorize": _("phone unlinked: scan the QR code again"),
    "authorizing": _("number being linked: finish scanning the QR code"),
    "new": _("number not linked yet: scan the QR code in Wassenger"),
    "loading": _("session starting at Wassenger: sending resumes once it is online"),
    "offline:panel": _("session closed in Wassenger's panel: reconnect the number"),
    "offline:modal": _("session closed in Wassenger's panel: reconnect the number"),
}
# SPEC's `device.status` values that mean the number cannot send, whatever its session says.
STATUS_REASONS = {
    "banned": _("number banned"),
    "removed": _("number removed from Wassenger"),
    "disabled": _("number disabled at Wassenger"),
    "unpaid": _("Wassenger subscription unpaid"),
}
BANNED, UNLINKED = "banned", "unlinked"


def session_halt_reason(status: str) -> str | None:
    """None when a session in `status` can send (online only); else the halt's reason.

    A state outside SPEC's enum halts too: only `online` is known to send, and `online`
    lifts the halt, so an unknown state cannot halt for good.
    """
    status = (status or "").strip().lower()
    if status == SESSION_ONLINE:
        return None
    explanation = SESSION_REASONS.get(status) or _("WhatsApp session not online")
    return f"{SESSION_HALT_PREFIX}{status or '?'}: {explanation}"


def status_halt_reason(status: str) -> str | None:
    """The halt's reason when the device's status at Wassenger forbids sending, else None."""
    status = (status or "").strip().lower()
    return f"{STATUS_HALT_PREFIX}{status}: {STATUS_REASONS[status]}" if status in STATUS_REASONS else None


def device_trouble(*, session_status: str, device_status: str) -> str:
    """BANNED or UNLINKED when the number needs the operator (an incident), else ""."""
    if device_status == "banned" or session_status == "blocked":
        return BANNED
    return UNLINKED if session_status == "authorize" else ""


def device_session_apply(*, device_id: int, status: str, now: datetime | None = None) -> str:
    """The session is in `status` (a `number:session` event or the 2-minute check): halt the
    device, reword a halt of its session, or lift one; what happened, for the event's log."""
    status = (status or "").strip().lower()
    Device.objects.filter(pk=device_id).update(session_status=status[:32])
    reason = session_halt_reason(status)
    if reason is None:
        device = Device(pk=device_id)
        return "resumed" if device_resume(device=device, halted_for=SESSION_HALT_PREFIX) else "online"
    outcome = _halt_or_reword(device_id, reason, over=(SESSION_HALT_PREFIX,), now=now)
    _hand_over_if_halted_for_good(device_id, now=now)
    return outcome


def device_status_apply(*, device_id: int, status: str, now: datetime | None = None) -> str:
    """The device's status at Wassenger (banned, removed, disabled, unpaid halt it)."""
    status = (status or "").strip().lower()
    Device.objects.filter(pk=device_id).exclude(wassenger_status=status[:32]).update(
        wassenger_status=status[:32]
    )
    reason = status_halt_reason(status)
    if reason is None:
        device = Device(pk=device_id)
        return "resumed" if device_resume(device=device, halted_for=STATUS_HALT_PREFIX) else "ok"
    # The device's status outranks its session's: "banned" replaces "phone offline".
    outcome = _halt_or_reword(device_id, reason, over=(SESSION_HALT_PREFIX, STATUS_HALT_PREFIX), now=now)
    _hand_over_if_halted_for_good(device_id, now=now)
    return outcome


# --- A device halted for good hands its unsent Message 1s over ------------------------------------


def device_halted_for_good(device: Device, *, now: datetime) -> bool:
    """Banned, or unlinked (and halted) for longer than DEVICE_HANDOVER_UNLINKED_HOURS: its
    campaigns would wait for it forever, so its unsent Message 1s go to their other devices."""
    trouble = device_trouble(session_status=device.session_status, device_status=device.wassenger_status)
    if trouble == BANNED:
        return device.halted_at is not None
    patience = timedelta(hours=settings.DEVICE_HANDOVER_UNLINKED_HOURS)
    return trouble == UNLINKED and device.halted_at is not None and device.halted_at <= now - patience


def _hand_over_if_halted_for_good(device_id: int, *, now: datetime | None) -> None:
    """Called on every session and status report (webhook, 2-minute check): a device that
    stays unlinked is handed over at the first report past the patience."""
    now = now or clock.now()
    device = Device.objects.filter(pk=device_id).first()
    if device is None or not device_halted_for_good(device, now=now):
        return
    moved = device_handover(device_id=device_id, now=now)
    if moved:
        logger.warning("device %s halted for good: unsent Message 1s handed over %s", device, moved)


@transaction.atomic
def device_handover(
    *, device_id: int, campaign_id: int | None = None, to_device_ids=None, now: datetime | None = None
) -> dict[int, int]:
    """Give the device's unsent Message 1s to the other devices of their campaigns; returns
    {device id: Message 1s it received}.

    Automatic for a device halted for good, and the operator's by hand (admin, API): only
    for `campaign_id` if given, only to `to_device_ids` if given. Only `pending` rows move,
    each with a conditional UPDATE: a message being sent, or whose outcome is unknown, stays
    where it is (it may have reached the contact), and the database's one Message 1 per
    contact and campaign means no contact gets a second. Each campaign's share between its
    other devices is balanced like a launch's (messaging/shares.py); halted devices get none.
    """
    now = now or clock.now()
    moved: dict[int, int] = {}
    for campaign, count in _unsent_by_campaign(device_id, campaign_id).items():
        shares = _handover_shares(campaign, device_id, count, to_device_ids, now)
        for target, taken in _move_unsent(campaign, device_id, shares, now).items():
            moved[target] = moved.get(target, 0) + taken
    _wake(moved)
    return moved


def _unsent_by_campaign(device_id: int, campaign_id: int | None) -> dict[int, int]:
    from django.db.models import Count

    from campaigns.models import FINAL_CAMPAIGN_STATUSES
    from messaging.models import Message, MessageKind, MessageStatus

    unsent = Message.objects.filter(
        device_id=device_id, kind=MessageKind.MESSAGE_1, status=MessageStatus.PENDING
    )
    unsent = unsent.exclude(campaign__status__in=FINAL_CAMPAIGN_STATUSES)
    if campaign_id is not None:
        unsent = unsent.filter(campaign_id=campaign_id)
    return dict(unsent.values_list("campaign_id").annotate(n=Count("id")).order_by("campaign_id"))


def _handover_shares(
    campaign_id: int, device_id: int, count: int, to_device_ids, now: datetime
) -> dict[int, int]:
    """{target device id: count} among the campaign's other devices that are not halted."""
    from campaigns.models import Campaign
    from messaging.claims import device_policy, device_state, devices_with_sending_facts
    from messaging.shares import Lane, shares_balanced

    links = Campaign.devices.through.objects.filter(campaign_id=campaign_id).exclude(device_id=device_id)
    if to_device_ids is not None:
        links = links.filter(device_id__in=list(to_device_ids))
    targets = [
        d
        for d in devices_with_sending_facts(links.values_list("device_id", flat=True), now)
        if d.halted_at is None
    ]
    queued = _pending_message_1(targets)
    lanes = [Lane(device_policy(d), device_state(d, now), queued.get(d.pk, 0)) for d in targets]
    shares = shares_balanced(lanes=lanes, count=count, now=now)
    return {device.pk: share for device, share in zip(targets, shares, strict=True) if share}


def _pending_message_1(devices: list[Device]) -> dict[int, int]:
    from django.db.models import Count

    from messaging.models import Message, MessageKind, MessageStatus

    pending = Message.objects.filter(
        device_id__in=[d.pk for d in devices], kind=MessageKind.MESSAGE_1, status=MessageStatus.PENDING
    )
    return dict(pending.values_list("device_id").annotate(n=Count("id")).order_by())


# The rows are locked first (a sender claiming one meanwhile keeps it: it is no longer
# pending once the lock is ours), then numbered in id order, each target taking its block.
_MOVE_SQL = """
WITH locked AS (
  SELECT id FROM {messages}
  WHERE campaign_id = %(campaign)s AND device_id = %(device)s AND kind = 'message_1' AND status = 'pending'
  ORDER BY id FOR UPDATE
), numbered AS (SELECT id, row_number() OVER (ORDER BY id) AS n FROM locked)
UPDATE {messages} m SET device_id = {target}, updated_at = %(now)s
FROM numbered WHERE m.id = numbered.id AND m.status = 'pending' AND numbered.n <= %(total)s
RETURNING m.device_id
"""


def _move_unsent(campaign_id: int, device_id: int, shares: dict[int, int], now: datetime) -> dict[int, int]:
    from django.db import connection

    from messaging.models import Message

    if not shares:
        return {}
    branches, upto = [], 0
    for target, count in shares.items():
        upto += count
        branches.append(f"WHEN numbered.n <= {int(upto)} THEN {int(target)}")
    statement = _MOVE_SQL.format(messages=Message._meta.db_table, target=f"CASE {' '.join(branches)} END")
    params = {"campaign": campaign_id, "device": device_id, "now": now, "total": upto}
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        targets = [row[0] for row in cursor.fetchall()]
    return {target: targets.count(target) for target in shares if target in targets}


def _wake(moved: dict[int, int]) -> None:
    from messaging.dispatch import sender_enqueue

    for target in moved:
        sender_enqueue(target)


def _halt_or_reword(device_id: int, reason: str, *, over: tuple[str, ...], now: datetime | None) -> str:
    """Halt the device with `reason`; when already halted for one of the `over` reasons,
    the newer one replaces it (an operator's or an auth error's halt is kept)."""
    if device_halt(device_id=device_id, reason=reason, now=now):
        return "halted"
    ours = Q()
    for prefix in over:
        ours |= Q(halted_reason__startswith=prefix)
    reworded = Device.objects.filter(ours, pk=device_id, halted_at__isnull=False)
    reworded = reworded.exclude(halted_reason=reason).update(halted_reason=reason)
    return "reworded" if reworded else "already halted"


# --- Plans: which events Wassenger sends a device ---------------------------------------------------

GATEWAY, PLATFORM, PLATFORM_BUSINESS = "gateway", "platform", "platform_business"
# SPEC: message:in:new and message:out:new on Platform plans, message:out:ack on Platform
# Business and Enterprise, message:out:sent on Gateway plans only. number:session and
# message:out:failed exist on every plan [I: SPEC names no plan for them].
_EVERY_PLAN = ("number:session", "message:out:failed", "message:out:expired", "message:out:removed")
PLAN_EVENTS = {
    GATEWAY: (*_EVERY_PLAN, "message:out:sent"),
    PLATFORM: (*_EVERY_PLAN, "message:in:new", "message:out:new"),
    PLATFORM_BUSINESS: (*_EVERY_PLAN, "message:in:new", "message:out:new", "message:out:ack"),
}


def plan_family(plan: str) -> str:
    """GATEWAY, PLATFORM or PLATFORM_BUSINESS from Wassenger's plan id, "" when unknown.

    Plan ids are not documented beyond SPEC's "io-enterprise": the words decide, leniently
    ("wa-gateway", "io-professional", "io-business", "io-enterprise"). An unknown plan
    gets no warning: Relance says what will not work only when it knows.
    """
    words = (plan or "").lower()
    if "gateway" in words:
        return GATEWAY
    if "business" in words or "enterprise" in words:
        return PLATFORM_BUSINESS
    return PLATFORM if words else ""


def plan_events(plan: str) -> tuple[str, ...]:
    """The webhook events to register for `plan` (every one Relance handles when unknown)."""
    return PLAN_EVENTS.get(plan_family(plan), PLAN_EVENTS[PLATFORM_BUSINESS])


def plan_warnings(plan: str) -> list[str]:
    """What will not work on this plan, in the operator's words (empty: everything works)."""
    family = plan_family(plan)
    if family == GATEWAY:
        return [str(_("Gateway plan: replies will not arrive: no Message 2, no STOP."))]
    if family == PLATFORM:
        return [str(_("Platform plan below Business: no delivery or read receipts (messages stay “sent”)."))]
    return []


# --- Connecting a number: Relance's webhook at Wassenger -------------------------------------------

WEBHOOK_NAME = "Relance"


def webhook_url() -> str:
    """Relance's webhook URL, with its secret in the query (wassenger-api.md §5)."""
    from urllib.parse import quote

    base = settings.RELANCE_BASE_URL.rstrip("/")
    return f"{base}/webhooks/wassenger/?secret={quote(settings.WASSENGER_WEBHOOK_SECRET, safe='')}"


def webhook_ours(hooks: list) -> object | None:
    """Relance's webhook among the account's: the same URL, whatever its query (a secret
    changed since is updated, not registered twice)."""
    path = webhook_url().split("?")[0]
    return next((h for h in hooks if h.url.split("?")[0] == path), None)


def device_state_of(device: Device, states: list, *, only_device: bool) -> object | None:
    """The remote device that is this one: by Wassenger id, else phone; a device with no id
    stands for the account's only number when it is Relance's only device."""
    for state in states:
        if device.wassenger_id and state.wassenger_id == device.wassenger_id:
            return state
        if not device.wassenger_id and device.phone and state.phone == device.phone:
            return state
    return states[0] if not device.wassenger_id and len(states) == 1 and only_device else None


@dataclass(frozen=True)
class Connected:
    webhook: object  # wassenger.Webhook
    created: bool
    session_status: str
    plan: str
    warnings: list[str]


def device_connect(*, device: Device) -> Connected:
    """Register (or update) Relance's webhook with the events the device's plan sends, and
    report its session and plan. Idempotent; raises wassenger.WassengerError."""
    from messaging import wassenger

    state = device_state_of(device, wassenger.device_states(), only_device=Device.objects.count() == 1)
    plan = state.plan if state else device.plan
    if state is not None:
        Device.objects.filter(pk=device.pk).update(
            session_status=state.session_status[:32], wassenger_status=state.status[:32], plan=plan[:64]
        )
    events, url = list(plan_events(plan)), webhook_url()
    existing = webhook_ours(wassenger.list_webhooks())
    if existing is None:
        device_id = state.wassenger_id if state else device.wassenger_id
        hook = wassenger.create_webhook(name=WEBHOOK_NAME, url=url, events=events, device=device_id)
    else:
        hook = wassenger.update_webhook(existing.id, name=WEBHOOK_NAME, url=url, events=events)
        if hook.status != "active":
            hook = wassenger.enable_webhook(hook.id) or hook
    session = state.session_status if state else device.session_status
    return Connected(hook, existing is None, session, plan, plan_warnings(plan))
