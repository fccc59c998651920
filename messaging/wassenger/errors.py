"""The typed errors of a Wassenger call: each tells its caller what to do next.

The client (client.py) turns every failure into exactly one of these; the sender, the
retry table (messaging/retries.py), number verification and the health check only ever
see them. Their text is redacted here, once: it never carries the API token, however a
server echoes it back, and never runs longer than a short quote.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

QUOTE_LIMIT = 200  # characters of a response body quoted in an error


class WassengerError(Exception):
    """A failed Wassenger call. `status` is None when no HTTP answer came back."""

    def __init__(self, detail: str = "", *, status: int | None = None, error_code: str = ""):
        self.status = status
        self.error_code = _redact(error_code)
        self.detail = _redact(detail)
        super().__init__(self._describe())

    def _describe(self) -> str:
        parts = [f"HTTP {self.status}" if self.status is not None else "no HTTP answer"]
        parts += [p for p in (self.error_code, self.detail) if p]
        return ": ".join(parts)


class RateLimited(WassengerError):
    def __init__(self, detail: str = "", *, retry_after: float | None = None, **kwargs: Any):
        self.retry_after = retry_after
        super().__init__(detail, **kwargs)

    def _describe(self) -> str:
        wait = f" (retry after {self.retry_after:g} s)" if self.retry_after is not None else ""
        return super()._describe() + wait


class InvalidNumber(WassengerError):
    """The request can never succeed for this phone: mark the contact invalid."""


class AuthError(WassengerError):
    """Bad token, missing permission or a plan/payment problem: stop this device."""


class DeviceRefused(WassengerError):
    """Wassenger refuses sends from this device, whatever the message: the device is not
    found (a 404 on POST /messages), its queue rejects or is frozen, the template or the
    account is refused. Halt the device; the message keeps its attempt."""


class Rejected(WassengerError):
    """A permanent refusal of this request; retrying the same request won't help."""


class Transient(WassengerError):
    """The request surely did not reach Wassenger (or it failed before acting): retry."""


class OutcomeUnknown(WassengerError):
    """The request may have been acted on: reconcile before any retry."""


def _redact(text: str) -> str:
    """Error text never carries the token, even when a server echoes it back."""
    token = getattr(settings, "WASSENGER_API_TOKEN", "")
    text = text.replace(token, "[token]") if token else text
    return text if len(text) <= QUOTE_LIMIT * 2 else text[: QUOTE_LIMIT * 2] + "…"
