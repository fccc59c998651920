"""Messages that will not be sent after all: the one place pending messages are cancelled.

Opting a contact out, cancelling a campaign and the dispatcher's sweep (which catches a
message that was in flight at that moment and came back to `pending`) all call
`messages_cancel_pending` with their own reason, which the operator reads as the
message's `last_error`. Only `pending` rows are touched: a `sending` or `unknown` one is
left to finish or be reconciled, since only Wassenger knows whether it went out.
"""

from __future__ import annotations

from datetime import datetime

from django.db.models import QuerySet

from config import clock
from messaging.models import Message, MessageStatus


def messages_cancel_pending(*, messages: QuerySet[Message], reason: str, now: datetime | None = None) -> int:
    """Cancel those of `messages` still pending, saying `reason`; returns how many."""
    pending = messages.filter(status=MessageStatus.PENDING)
    return pending.update(status=MessageStatus.CANCELLED, last_error=reason, updated_at=now or clock.now())
