"""`POST /webhooks/wassenger/`: authenticate, store raw, enqueue, answer fast.

Answers: 200 with counts (stored, rejected, duplicates) for any JSON, even one Relance
does not understand (stored as rejected, so that Wassenger stops retrying); 403 for a
wrong or missing secret, 413 for a body over WEBHOOK_MAX_BODY_BYTES, 400 for a body that
is not JSON; nothing is stored for any of those. 503 only when the database cannot store
the event: Wassenger retries any non-2xx, so nothing is lost.
"""

import hmac
import logging

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from webhooks.ingest import BodyError, body_parse, events_store

logger = logging.getLogger(__name__)

SECRET_HEADER = "X-Webhook-Secret"  # noqa: S105 (a header name, not a secret)


@csrf_exempt
@require_POST
def wassenger(request: HttpRequest) -> JsonResponse:
    try:
        return _receive(request)
    except SuspiciousOperation as error:  # e.g. a query string with thousands of fields
        logger.warning("webhook refused from %s: %s", _client(request), type(error).__name__)
        return _answer(400, error="malformed request")
    except Exception:  # never a 500 page: log it, and let Wassenger deliver again later
        logger.exception("webhook: could not store the event")
        return _answer(503, error="could not store the event, try again later", headers={"Retry-After": "60"})


def _receive(request: HttpRequest) -> JsonResponse:
    if not _secret_matches(request):
        logger.warning("webhook refused from %s: wrong or missing secret", _client(request))
        return _answer(403, error="wrong or missing secret")
    body = _body(request)
    if body is None:
        logger.warning("webhook refused from %s: body over %d bytes", _client(request), _limit())
        return _answer(413, error=f"the body is larger than {_limit()} bytes")
    try:
        parsed = body_parse(body)
    except BodyError as error:
        logger.warning("webhook refused from %s: %s", _client(request), error)
        return _answer(400, error=str(error))
    return _answer(200, **events_store(body=parsed).as_dict())


def _secret_matches(request: HttpRequest) -> bool:
    """The secret from `?secret=` (what Wassenger can be given) or the header, in constant time."""
    given = request.GET.get("secret") or request.headers.get(SECRET_HEADER) or ""
    expected = settings.WASSENGER_WEBHOOK_SECRET
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


def _body(request: HttpRequest) -> bytes | None:
    """The body, or None when it is over the limit (judged on Content-Length before reading)."""
    if _declared_length(request) > _limit():
        return None
    try:
        body = request.body
    except RequestDataTooBig:  # Django's own cap, should it be set below ours
        return None
    return body if len(body) <= _limit() else None


def _declared_length(request: HttpRequest) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


def _limit() -> int:
    return settings.WEBHOOK_MAX_BODY_BYTES


def _client(request: HttpRequest) -> str:
    return request.META.get("REMOTE_ADDR", "?")


def _answer(status: int, headers: dict | None = None, **body) -> JsonResponse:
    return JsonResponse(body, status=status, headers=headers)
