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
from django.db.models import Count, Q
from django.utils.translation import gettext

from messaging.devices import device_halt
from messaging.models import AttemptOutcome, Device, Message, MessageAttempt, MessageKind, MessageStatus

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


def recent_sends(device: Device, now: datetime) -> RecentSends:
    """The device's sends over the lookback (and STOPs over the reply window), since its resume."""
    since = _since(device, now - timedelta(minutes=settings.DEVICE_TROUBLE_LOOKBACK_MINUTES))
    window_since = _since(device, now - timedelta(hours=settings.REPLY_WINDOW_HOURS))
    mine = Message.objects.filter(device=device)
    counts = mine.aggregate(
        sent=Count("id", filter=Q(sent_at__gte=since)),
        failed=Count("id", filter=Q(status=MessageStatus.FAILED, failed_at__gte=since)),
        message_1_sent=Count("id", filter=Q(kind=MessageKind.MESSAGE_1, sent_at__gte=window_since)),
    )
    invalid = MessageAttempt.objects.filter(
        message__device=device, outcome=AttemptOutcome.INVALID_NUMBER, started_at__gte=since
    ).count()
    return RecentSends(**counts, not_on_whatsapp=invalid, stops=_stops(device, window_since))


def _stops(device: Device, since: datetime) -> int:
    from webhooks.models import InboundMessage, InboundOutcome

    return InboundMessage.objects.filter(
        device=device, outcome=InboundOutcome.OPT_OUT, written_at__gte=since
    ).count()


def _since(device: Device, start: datetime) -> datetime:
    return max(start, device.resumed_at) if device.resumed_at else start


def devices_slow_down(now: datetime) -> dict[int, str]:
    """Halt every sending device in trouble; {device id: reason} of those halted now."""
    if not settings.DEVICE_PAUSE_ON_TROUBLE:
        return {}
    halted, thresholds = {}, Thresholds.from_settings()
    for device in Device.objects.filter(halted_at__isnull=True):
        reason = trouble_reason(recent_sends(device, now), thresholds)
        if reason and device_halt(device_id=device.pk, reason=f"{TROUBLE_HALT_PREFIX}{reason}", now=now):
            logger.error("device %s halted on trouble: %s", device, reason)
            halted[device.pk] = reason
    return halted
