"""Messages that will not be sent after all, or will be sent again: the one place pending
messages are cancelled and failed ones put back.

Opting a contact out (all but the confirmation of it), cancelling a campaign and the
dispatcher's sweep (which catches a message that was in flight at that moment and came
back to `pending`) all call `messages_cancel_pending` with their own reason, which the
operator reads as the message's `last_error`. Only `pending` rows are touched: a `sending` or `unknown` one is
left to finish or be reconciled, since only Wassenger knows whether it went out.
"""

from __future__ import annotations

from datetime import datetime

from django.db.models import QuerySet

from config import clock
from messaging.models import Message, MessageKind, MessageStatus


def messages_stopped_by_opt_out(messages: QuerySet[Message]) -> QuerySet[Message]:
    """Those of `messages` an opt-out stops: every one but the confirmation of the opt-out."""
    return messages.exclude(kind=MessageKind.OPT_OUT)


def messages_cancel_pending(*, messages: QuerySet[Message], reason: str, now: datetime | None = None) -> int:
    """Cancel those of `messages` still pending, saying `reason`; returns how many."""
    pending = messages.filter(status=MessageStatus.PENDING)
    return pending.update(status=MessageStatus.CANCELLED, last_error=reason, updated_at=now or clock.now())


def messages_retriable(messages: QuerySet[Message]) -> QuerySet[Message]:
    """Those of `messages` that failed before Wassenger accepted them, for a reason about the
    link or the moment rather than the contact: not the ones Wassenger accepted (it may have
    delivered them), nor a contact not on WhatsApp or opted out since."""
    from campaigns.models import WhatsAppStatus

    return (
        messages.filter(status=MessageStatus.FAILED, wassenger_id="", sent_at__isnull=True)
        .exclude(contact__whatsapp_status=WhatsAppStatus.INVALID)
        .exclude(contact__opted_out_at__isnull=False)
    )


def messages_requeue_failed(*, messages: QuerySet[Message], now: datetime | None = None) -> int:
    """Put the retriable ones of `messages` back to pending with fresh attempts; how many."""
    now = now or clock.now()
    return messages_retriable(messages).update(
        status=MessageStatus.PENDING,
        attempts=0,
        next_attempt_at=now,
        failed_at=None,
        last_error="",
        updated_at=now,
    )
