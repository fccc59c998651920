"""Logging helpers: no secret reaches a log line.

Wassenger calls the webhook with the secret in the query string, and the development
server logs every request line; this filter blanks it (and any `token=`) wherever it appears.
"""

import logging
import re

_SECRET_IN_URL = re.compile(r"((?:secret|token)=)[^&\s\"']+", re.IGNORECASE)


def redact(text: str) -> str:
    return _SECRET_IN_URL.sub(r"\1[redacted]", text)


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
