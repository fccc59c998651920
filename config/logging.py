"""Logging helpers: no secret and no whole phone number reaches a log line.

Wassenger calls the webhook with the secret in the query string, and the development
server logs every request line; a filter blanks it (and any `token=`) wherever it appears.
A contact's phone is logged only through `phone_mask`, which every app's log lines use
(the Wassenger client, the sender, replies, number verification).
"""

import logging
import re

_SECRET_IN_URL = re.compile(r"((?:secret|token)=)[^&\s\"']+", re.IGNORECASE)


def redact(text: str) -> str:
    return _SECRET_IN_URL.sub(r"\1[redacted]", text)


def phone_mask(phone: str) -> str:
    """`+33612345678` → `+336•••••678`: enough to tell numbers apart in logs, no more."""
    if len(phone) <= 7:
        return "•" * len(phone)
    return f"{phone[:4]}{'•' * (len(phone) - 7)}{phone[-3:]}"


class SkipDeliberateUnavailable(logging.Filter):
    """Drop the "Service Unavailable" error Django logs for a 503 Relance answered on purpose.

    Only /health/ (an outage, which opens one incident and one email) and the webhook (the
    database is down: Wassenger delivers again) answer 503. Emailed to the admins, each
    would be one email per monitor poll or per delivery, and the webhook's carries its
    secret in the request's query string.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(record, "status_code", None) != 503


class RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.msg) if isinstance(record.msg, str) else record.msg
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        return True
