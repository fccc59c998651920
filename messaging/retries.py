"""The retry policy: what happens to a message after each kind of outcome [legacy 4.6].

One table, one formula, used by the sender and by reconciliation alike. django-q2's own
`retry` only redelivers lost tasks; it is not this.
"""

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from django.conf import settings

from messaging import wassenger
from messaging.models import AttemptOutcome, MessageStatus


def retry_delay(attempts_made: int) -> timedelta:
    """Wait before attempt n+1 after n attempts: base × 2^(n-1) → 60, 120, 240 s."""
    return timedelta(seconds=settings.RETRY_BASE_SECONDS * 2 ** (max(attempts_made, 1) - 1))


def attempts_left(attempts_made: int) -> bool:
    return attempts_made < settings.RETRY_MAX_ATTEMPTS


@dataclass(frozen=True)
class NextStep:
    """Where a message goes after an attempt, and what the device must do."""

    outcome: str
    status: str
    retry_at: datetime | None = None  # next_attempt_at when back to pending
    device_wait_until: datetime | None = None  # the whole device waits (rate limit)
    halt_device: bool = False
    contact_invalid: bool = False
    refund_attempt: bool = False  # the failure was the device's, not the message's
    surely_not_sent: bool = False  # give the day's quota back


def next_step(error: Exception | None, *, attempts_made: int, now: datetime) -> NextStep:
    """The documented next state for an attempt that ended with `error` (None: accepted)."""
    if error is None:
        return NextStep(AttemptOutcome.ACCEPTED, MessageStatus.SENT)
    if isinstance(error, wassenger.OutcomeUnknown):
        # It may have gone out: never re-send before reconciliation has looked it up.
        return NextStep(AttemptOutcome.UNKNOWN, MessageStatus.UNKNOWN)
    if isinstance(error, wassenger.InvalidNumber):
        return NextStep(
            AttemptOutcome.INVALID_NUMBER, MessageStatus.FAILED, contact_invalid=True, surely_not_sent=True
        )
    if isinstance(error, wassenger.AuthError | wassenger.DeviceRefused):
        # The device's fault, not the message's: halt the device, give the attempt back.
        refused = isinstance(error, wassenger.DeviceRefused)
        outcome = AttemptOutcome.REJECTED if refused else AttemptOutcome.AUTH_ERROR
        return NextStep(
            outcome,
            MessageStatus.PENDING,
            retry_at=now,
            halt_device=True,
            refund_attempt=True,
            surely_not_sent=True,
        )
    if isinstance(error, wassenger.RateLimited):
        device_wait = timedelta(seconds=max(settings.RATE_LIMIT_MIN_WAIT_SECONDS, error.retry_after or 0))
        step = _retry_or_fail(
            AttemptOutcome.RATE_LIMITED, attempts_made, now + max(device_wait, retry_delay(attempts_made))
        )
        return replace(step, device_wait_until=now + device_wait)
    if isinstance(error, wassenger.Transient):
        return _retry_or_fail(AttemptOutcome.TRANSIENT, attempts_made, now + retry_delay(attempts_made))
    # Rejected, and anything unforeseen: a permanent refusal, retrying would not help.
    return NextStep(AttemptOutcome.REJECTED, MessageStatus.FAILED, surely_not_sent=True)


def _retry_or_fail(outcome: str, attempts_made: int, retry_at: datetime) -> NextStep:
    if attempts_left(attempts_made):
        return NextStep(outcome, MessageStatus.PENDING, retry_at=retry_at, surely_not_sent=True)
    return NextStep(outcome, MessageStatus.FAILED, surely_not_sent=True)
