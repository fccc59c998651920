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


def breaker_wait(failures_in_a_row: int) -> timedelta:
    """How long a device waits after its link's n-th failure in a row: base × 2^(n-1), at
    most the ceiling (60 s, 120 s, … 30 min by default)."""
    doubled = settings.DEVICE_BREAKER_BASE_SECONDS * 2 ** min(max(failures_in_a_row, 1) - 1, 32)
    return timedelta(seconds=min(doubled, settings.DEVICE_BREAKER_MAX_SECONDS))


@dataclass(frozen=True)
class NextStep:
    """Where a message goes after an attempt, and what the device must do."""

    outcome: str
    status: str
    retry_at: datetime | None = None  # next_attempt_at when back to pending
    halt_device: bool = False
    contact_invalid: bool = False
    refund_attempt: bool = False  # the failure was the device's, not the message's
    surely_not_sent: bool = False  # give the day's quota back
    # The device's link failed (no answer, a 5xx, a 429): its breaker opens, the device waits
    # `breaker_wait`, and at least `link_wait_at_least` (a 429's Retry-After).
    link_failed: bool = False
    link_wait_at_least: timedelta | None = None


def next_step(error: Exception | None, *, attempts_made: int, now: datetime) -> NextStep:
    """The documented next state for an attempt that ended with `error` (None: accepted).

    Attempts are spent only on answers about the message itself: an outage, a 5xx or a 429
    is the device's problem (its breaker), so the message keeps its place and its attempt.
    """
    if error is None:
        return NextStep(AttemptOutcome.ACCEPTED, MessageStatus.SENT)
    if isinstance(error, wassenger.OutcomeUnknown):
        # It may have gone out: never re-send before reconciliation has looked it up. No HTTP
        # answer at all (a timeout, a dropped connection) is also a sign about the link.
        return NextStep(AttemptOutcome.UNKNOWN, MessageStatus.UNKNOWN, link_failed=error.status is None)
    if isinstance(error, wassenger.InvalidNumber):
        return NextStep(
            AttemptOutcome.INVALID_NUMBER, MessageStatus.FAILED, contact_invalid=True, surely_not_sent=True
        )
    if isinstance(error, wassenger.AuthError | wassenger.DeviceRefused):
        # The device's fault, not the message's: halt the device, give the attempt back.
        refused = isinstance(error, wassenger.DeviceRefused)
        outcome = AttemptOutcome.REJECTED if refused else AttemptOutcome.AUTH_ERROR
        return replace(_kept_in_place(outcome, now), halt_device=True)
    if isinstance(error, wassenger.RateLimited):
        wait = timedelta(seconds=max(settings.RATE_LIMIT_MIN_WAIT_SECONDS, error.retry_after or 0))
        step = _kept_in_place(AttemptOutcome.RATE_LIMITED, now)
        return replace(step, link_failed=True, link_wait_at_least=wait)
    if isinstance(error, wassenger.Transient):
        return replace(_kept_in_place(AttemptOutcome.TRANSIENT, now), link_failed=True)
    # Rejected, and anything unforeseen: a permanent refusal, retrying would not help.
    return NextStep(AttemptOutcome.REJECTED, MessageStatus.FAILED, surely_not_sent=True)


def _kept_in_place(outcome: str, now: datetime) -> NextStep:
    """Back to pending at once (its place in the queue kept), its attempt given back."""
    return NextStep(outcome, MessageStatus.PENDING, retry_at=now, refund_attempt=True, surely_not_sent=True)
