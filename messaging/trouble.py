"""Slowing down on trouble: a device whose recent sends go bad is halted, not just emailed about.

Bad is one of: more than ALERT_FAILURE_RATE of its recent sends failed (over at least
ALERT_FAILURE_MIN_ATTEMPTS), a burst of "not on WhatsApp" answers (DEVICE_PAUSE_NOT_ON_WHATSAPP
within the lookback), or more than DEVICE_PAUSE_STOP_RATE of its Message 1 of the last reply
window answered STOP. Each is what a ban is preceded by: a list of bad numbers, or contacts
who report the messages. The halt is the device's ordinary one (messaging/devices.py), its
reason on the dashboard; only an operator resumes it (admin, which records when), and only
sends after that resume count towards the next halt.

`trouble_reason` is pure (the figures in, the reason out); `devices_slow_down` gathers the
figures and halts, from the 2-minute health check.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count, F, Q, Value
from django.db.models.functions import Coalesce, Greatest
from django.utils.translation import gettext

from messaging.devices import device_halt
from messaging.models import AttemptOutcome, Message, MessageAttempt, MessageKind, MessageStatus

logger = logging.getLogger(__name__)

# A halt written here starts with this (untranslated, as the session's and status's prefixes).
TROUBLE_HALT_PREFIX = "trouble: "


@dataclass(frozen=True)
class RecentSends:
    """A device's recent sends, since the lookback began (or the operator last resumed it)."""

    sent: int  # accepted by Wassenger
    failed: int
    not_on_whatsapp: int  # attempts answered "not on WhatsApp"
    message_1_sent: int  # over the reply window, for the STOP rate
    stops: int  # replies that were a stop word, over the reply window


@dataclass(frozen=True)
class Thresholds:
    failure_rate: float
    min_attempts: int
    not_on_whatsapp: int
    stop_rate: float

    @classmethod
    def from_settings(cls) -> Thresholds:
        return cls(
            failure_rate=settings.ALERT_FAILURE_RATE,
            min_attempts=settings.ALERT_FAILURE_MIN_ATTEMPTS,
            not_on_whatsapp=settings.DEVICE_PAUSE_NOT_ON_WHATSAPP,
            stop_rate=settings.DEVICE_PAUSE_STOP_RATE,
        )


def trouble_reason(recent: RecentSends, thresholds: Thresholds) -> str | None:
    """Why the device must stop sending, in the operator's words; None when all is well."""
    attempts = recent.sent + recent.failed
    if attempts >= thresholds.min_attempts and recent.failed > thresholds.failure_rate * attempts:
        return gettext(
            "%(failed)d of its %(attempts)d recent sends failed: look at their errors, then resume the device"
        ) % {"failed": recent.failed, "attempts": attempts}
    if thresholds.not_on_whatsapp and recent.not_on_whatsapp >= thresholds.not_on_whatsapp:
        return gettext(
            "%(count)d recent numbers are not on WhatsApp: check the contact list, then resume the device"
        ) % {"count": recent.not_on_whatsapp}
    sent = recent.message_1_sent
    if sent >= thresholds.min_attempts and recent.stops > thresholds.stop_rate * sent:
        return gettext(
            "%(stops)d of its %(sent)d recent Message 1 were answered STOP: review the message and the "
            "audience, then resume the device"
        ) % {"stops": recent.stops, "sent": sent}
    return None


def recent_sends(now: datetime) -> dict[int, RecentSends]:
    """Each sending device's recent sends: over the lookback (STOPs and Message 1 over the
    reply window), never before its last resume. Three grouped queries, whatever the devices."""
    lookback = now - timedelta(minutes=settings.DEVICE_TROUBLE_LOOKBACK_MINUTES)
    reply_window = now - timedelta(hours=settings.REPLY_WINDOW_HOURS)
    recent, in_window = _since("device__resumed_at", lookback), _since("device__resumed_at", reply_window)
    sending = Message.objects.filter(device__halted_at__isnull=True)
    rows = (
        sending.filter(Q(sent_at__gte=min(lookback, reply_window)) | Q(failed_at__gte=lookback))
        .values("device_id")
        .annotate(
            sent=Count("id", filter=Q(sent_at__gte=recent)),
            failed=Count("id", filter=Q(status=MessageStatus.FAILED, failed_at__gte=recent)),
            message_1_sent=Count("id", filter=Q(kind=MessageKind.MESSAGE_1, sent_at__gte=in_window)),
        )
        .order_by()
    )
    invalid = dict(
        MessageAttempt.objects.filter(
            message__device__halted_at__isnull=True,
            outcome=AttemptOutcome.INVALID_NUMBER,
            started_at__gte=_since("message__device__resumed_at", lookback),
        )
        .filter(started_at__gte=lookback)
        .values_list("message__device_id")
        .annotate(n=Count("id"))
        .order_by()
    )
    stops = _stops(reply_window)
    counts = {row.pop("device_id"): row for row in rows}
    return {
        device: RecentSends(
            **counts.get(device, {"sent": 0, "failed": 0, "message_1_sent": 0}),
            not_on_whatsapp=invalid.get(device, 0),
            stops=stops.get(device, 0),
        )
        for device in set(counts) | set(invalid) | set(stops)
    }


def _stops(reply_window: datetime) -> dict[int, int]:
    from webhooks.models import InboundMessage, InboundOutcome

    stops = InboundMessage.objects.filter(
        outcome=InboundOutcome.OPT_OUT,
        device__halted_at__isnull=True,
        written_at__gte=_since("device__resumed_at", reply_window),
    ).filter(written_at__gte=reply_window)
    return dict(stops.values_list("device_id").annotate(n=Count("id")).order_by())


def _since(resumed_at: str, start: datetime):
    """The later of `start` and the device's last resume, in SQL."""
    return Greatest(Value(start), Coalesce(F(resumed_at), Value(start)))


def devices_slow_down(now: datetime) -> dict[int, str]:
    """Halt every sending device in trouble; {device id: reason} of those halted now."""
    if not settings.DEVICE_PAUSE_ON_TROUBLE:
        return {}
    halted, thresholds = {}, Thresholds.from_settings()
    for device_id, recent in recent_sends(now).items():
        reason = trouble_reason(recent, thresholds)
        if reason and device_halt(device_id=device_id, reason=f"{TROUBLE_HALT_PREFIX}{reason}", now=now):
            logger.error("device %s halted on trouble: %s", device_id, reason)
            halted[device_id] = reason
    return halted
