"""The Wassenger client: the one module that talks HTTP to Wassenger.

Every failure becomes exactly one `WassengerError` subclass (errors.py) that tells the
sender what to do next (see `_status_error` and `_network_error` for the rules):

- `RateLimited`     429 and 503: wait (`retry_after` when the server said), then retry.
- `InvalidNumber`   a 4xx with Wassenger's `number:notfound` code, or a 400/404/422 whose
                    error names the phone/number (and not our device): never retry.
- `AuthError`       401, 402, 403: stop sending from this device until a human looks.
- `DeviceRefused`   on a send, a 4xx about the device, its queue (`reject`, `freeze`), the
                    template or the account, and any 404 (POST /messages exists: what is
                    not found is the device): halt the device; the message keeps its attempt.
- `Rejected`        any other 4xx (and unexpected 1xx/3xx): permanent, retrying won't fix it.
- `Transient`       5xx other than 502, 503 and 504 (and 500 on a send); 408;
                    refused/timed-out connection, DNS, TLS: the request surely did not go
                    through; retrying is safe.
- `OutcomeUnknown`  read timeout, connection dropped after the request was sent, a 502 or
                    504 (a gateway that may have passed the request on before it gave up),
                    a 2xx we cannot parse, and on a send a 500 (SPEC: "unexpected error",
                    no proof nothing was queued) or a 409 (it may mean "already queued"):
                    the message may have gone out; look it up by reference, never blindly
                    re-send.

Settings are read at call time so that tests (and a device switch) can change them.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import quote

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError

from config import clock
from config.logging import phone_mask
from messaging.wassenger import payloads
from messaging.wassenger.errors import (
    QUOTE_LIMIT,
    AuthError,
    DeviceRefused,
    InvalidNumber,
    OutcomeUnknown,
    RateLimited,
    Rejected,
    Transient,
    WassengerError,
)

logger = logging.getLogger("messaging.wassenger")

USER_AGENT = "Relance/1.0 (+WhatsApp campaigns)"
PRIORITIES = ("low", "normal", "high", "urgent")
# A message's `status` and `deliveryStatus` (SPEC) that mean it will never be delivered.
GIVEN_UP_STATUSES = frozenset({"expired", "removed"})
FAILED_STATUSES = frozenset({"failed", "invalid", *GIVEN_UP_STATUSES})
FAILED_DELIVERIES = frozenset({"failed", "cancelled"})
# A page of GET /v1/messages: a reference has a few copies at most (one per attempt).
LOOKUP_PAGE_SIZE = 20

T = TypeVar("T")


# --- Results ------------------------------------------------------------------------


@dataclass(frozen=True)
class SendResult:
    wassenger_id: str
    whatsapp_id: str
    status: str
    raw: dict


@dataclass(frozen=True)
class NumberCheck:
    phone: str
    exists: bool
    whatsapp_id: str


@dataclass(frozen=True)
class RemoteMessage:
    """A message as a lookup found it. Its verdict (`failed`, `given_up`, `rank`) is read
    from Wassenger's `status` and `deliveryStatus`, and believed."""

    wassenger_id: str
    whatsapp_id: str
    status: str
    delivery_status: str
    reference: str
    raw: dict
    created_at: datetime | None = None
    sent_at: datetime | None = None
    failed_at: datetime | None = None
    delivered_at: datetime | None = None
    read_at: datetime | None = None
    failure_reason: str = ""

    @property
    def failed(self) -> bool:
        """Wassenger failed it, found it invalid, or gave it up (expired, removed)."""
        return self.status in FAILED_STATUSES or self.delivery_status in FAILED_DELIVERIES

    @property
    def not_on_whatsapp(self) -> bool:
        """It failed because the number is not on WhatsApp (payloads' one rule for it)."""
        return self.failed and payloads.failure_names_missing_number(self.failure_reason)

    @property
    def given_up(self) -> bool:
        """Expired or removed while queued: it never went out."""
        return self.status in GIVEN_UP_STATUSES

    @property
    def rank(self) -> int:
        """How far it got (1 sent, 2 delivered, 3 read); queued and processing count as
        sent (Wassenger has it), and so does any state Relance does not know."""
        return max(1, payloads.ACK_RANK.get(self.delivery_status.lower(), 1))


@dataclass(frozen=True)
class DeviceState:
    """What `GET /v1/devices` says of one number (SPEC device model), each "" when absent."""

    wassenger_id: str
    phone: str
    status: str  # device.status: operative, banned, removed, disabled, unpaid, …
    session_status: str  # device.session.status: online, offline, authorize, blocked, …
    plan: str
    raw: dict


@dataclass(frozen=True)
class Webhook:
    """One webhook of the account (SPEC webhook model)."""

    id: str
    url: str
    status: str  # active, pending, failed, error, removed (WALI: disabled)
    events: tuple[str, ...]
    device: str
    raw: dict


# --- Public calls -------------------------------------------------------------------


def send_message(
    *,
    phone: str,
    reference: str,
    text: str = "",
    template: dict | None = None,
    device: str = "",
    priority: str = "normal",
    media: dict | None = None,
) -> SendResult:
    """Queue one WhatsApp message to `phone`: exactly one of `text` or `template`.

    `template` is `{"name", "language", "variables": [...]}`; see `_template_payload`.
    `media` is `{"file": <id from upload_file>}` or `{"url": <public URL>}` (optionally with
    `filename`); the text is then its caption.
    """
    if bool(text) == bool(template):
        raise ValueError("send_message needs exactly one of text or template")
    if priority not in PRIORITIES:
        raise ValueError(f"priority must be one of {PRIORITIES}, not {priority!r}")
    payload: dict[str, Any] = {"phone": phone, "reference": reference, "priority": priority}
    payload.update({"message": text} if text else {"template": _template_payload(template)})
    if device:
        payload["device"] = device
    if media:
        payload["media"] = dict(media)
    return _request("POST", "/messages", _parse_send, json=payload, phone=phone)


def upload_file(*, content: bytes, filename: str, mime: str = "") -> str:
    """Upload an attachment once (`POST /v1/files`, multipart `file`); returns its file id, for
    `media: {"file": id}`. The answer's shape is not documented: a file object, or a list of
    them (lenient, as for lists of messages) [I]."""
    files = {"file": (filename, content, mime or "application/octet-stream")}
    return _request("POST", "/files", _parse_file_id, files=files)


def _parse_file_id(response: requests.Response) -> str:
    body = _success_json(response, (list, dict))
    items = [body] if isinstance(body, dict) and "id" in body else _listed(body)
    ids = [item["id"] for item in items if isinstance(item, dict) and isinstance(item.get("id"), str)]
    if not ids or not ids[0]:
        raise OutcomeUnknown("2xx without a file id", status=response.status_code)
    return ids[0]


def list_devices() -> list[dict]:
    """The account's devices (numbers): the health check's proof that Wassenger answers
    and accepts our token."""
    return _request("GET", "/devices", lambda r: _success_json(r, list))


def device_states() -> list[DeviceState]:
    """Every device of the account with its status, session and plan (the 2-minute check)."""
    return [_device_state(item) for item in list_devices() if isinstance(item, dict)]


def list_webhooks() -> list[Webhook]:
    """The account's webhooks (`GET /v1/webhooks`)."""
    return _request("GET", "/webhooks", lambda r: _webhooks(_success_json(r, (list, dict))))


def create_webhook(*, name: str, url: str, events: list[str], device: str = "") -> Webhook:
    payload: dict[str, Any] = {"name": name[:30], "url": url, "events": list(events)}
    if device:
        payload["device"] = device
    return _request("POST", "/webhooks", _parse_webhook, json=payload, log_path="/webhooks")


def update_webhook(webhook_id: str, *, name: str, url: str, events: list[str]) -> Webhook:
    path = f"/webhooks/{quote(webhook_id, safe='')}"
    payload = {"name": name[:30], "url": url, "events": list(events)}
    return _request("PATCH", path, _parse_webhook, json=payload)


def enable_webhook(webhook_id: str) -> Webhook | None:
    """Turn a webhook Wassenger disabled back on; its new state when the answer says."""
    path = f"/webhooks/{quote(webhook_id, safe='')}/enable"
    return _request("POST", path, lambda r: _webhooks(_success_json(r, (list, dict)))[:1] or [None])[0]


def check_number(phone: str) -> NumberCheck:
    """Whether `phone` has a WhatsApp account (metered by Wassenger's plan)."""
    return _request(
        "POST", "/numbers/exists", lambda r: _parse_number(r, phone), json={"phone": phone}, phone=phone
    )


def get_message(wassenger_id: str, *, timeout: float | None = None) -> RemoteMessage | None:
    """The message as Wassenger knows it now, or None when Wassenger has no such id.

    `timeout` (seconds, connect and read) replaces the client's own for this call."""
    path = f"/messages/{quote(wassenger_id, safe='')}"
    return _request("GET", path, _parse_one_message, timeout=timeout)


def find_message_by_reference(reference: str, *, timeout: float | None = None) -> RemoteMessage | None:
    """The message we sent with this `reference`, or None: reconciles a send whose answer was lost.

    `GET /v1/messages` filters by `reference`, an array filter, one page at a time
    (`page` from 0, `size`; wassenger-api.md section 0). The answer is filtered again
    here: an API that ignored the filter finds nothing rather than somebody else's
    message. Of several copies (a send re-made after a lookup found nothing), one that
    did not fail wins, then the latest.
    """
    return _request(
        "GET",
        "/messages",
        lambda r: _parse_by_reference(r, reference),
        params={"reference": [reference], "page": 0, "size": LOOKUP_PAGE_SIZE},
        log_path=f"/messages?reference={reference}",
        timeout=timeout,
    )


# --- HTTP ---------------------------------------------------------------------------

_session_state: tuple[int, requests.Session] | None = None


def _session() -> requests.Session:
    """One Session per process: a forked worker must not share its parent's sockets."""
    global _session_state
    if _session_state is None or _session_state[0] != os.getpid():
        session = requests.Session()
        # No retries at this level: a retried POST could send a message twice.
        adapter = HTTPAdapter(max_retries=0)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
        # Left to itself, requests reads the proxy and CA-bundle variables (two walks
        # through os.environ) and looks for a ~/.netrc on every call: a tenth of a send's
        # CPU. They are read once per process instead (`_environ_proxies`); no netrc
        # credentials either, the Token header is the one credential Wassenger gets.
        session.trust_env = False
        session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        _session_state = (os.getpid(), session)
    return _session_state[1]


def _request(
    method: str,
    path: str,
    parse: Callable[[requests.Response], T],
    *,
    phone: str = "",
    log_path: str = "",
    **kwargs: Any,
) -> T:
    """Make one call, log one line about it, and turn any failure into a WassengerError."""
    started = time.monotonic()
    outcome = "?"
    try:
        response = _http(method, path, **kwargs)
        outcome = str(response.status_code)
        return parse(response)
    except WassengerError as error:
        # No HTTP status: name the network failure requests saw (ReadTimeout, …).
        cause = error.status if error.status is not None else type(error.__cause__).__name__
        outcome = f"{cause} {type(error).__name__}"
        raise
    finally:
        _log_call(method, log_path or path, outcome, started, phone)


@functools.lru_cache(maxsize=8)
def _environ_proxies(base_url: str) -> dict[str, str]:
    """HTTP(S)_PROXY for `base_url`, unless NO_PROXY exempts it, as requests would read them."""
    return requests.utils.get_environ_proxies(base_url)


def _http(method: str, path: str, *, timeout: float | None = None, **kwargs: Any) -> requests.Response:
    base_url = settings.WASSENGER_API_URL.rstrip("/")
    timeouts = (settings.WASSENGER_CONNECT_TIMEOUT, settings.WASSENGER_READ_TIMEOUT)
    try:
        return _session().request(
            method,
            base_url + path,
            proxies=_environ_proxies(base_url),
            headers={"Token": settings.WASSENGER_API_TOKEN},
            timeout=(timeout, timeout) if timeout else timeouts,
            # A redirected POST turns into a GET: never follow, report it instead.
            allow_redirects=False,
            **kwargs,
        )
    except requests.RequestException as exc:
        raise _network_error(exc) from exc


def _log_call(method: str, path: str, outcome: str, started: float, phone: str) -> None:
    elapsed_ms = (time.monotonic() - started) * 1000
    level = logging.INFO if outcome.isdigit() else logging.WARNING
    who = f" phone={phone_mask(phone)}" if phone else ""
    logger.log(level, "%s %s %s %.0fms%s", method, path, outcome, elapsed_ms, who)


# --- Failure mapping ----------------------------------------------------------------

# Failures that happen before a single byte of the request left: nothing was sent.
_BEFORE_SENDING = (
    requests.ConnectTimeout,
    requests.exceptions.SSLError,
    requests.exceptions.ProxyError,
    requests.exceptions.InvalidURL,
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidSchema,
    requests.exceptions.InvalidHeader,
)


def _network_error(exc: requests.RequestException) -> WassengerError:
    """No HTTP answer: Transient if the request never left, else OutcomeUnknown.

    requests wraps both a refused connection and a connection dropped after sending in
    `ConnectionError`; only the first carries urllib3's MaxRetryError with a
    NewConnectionError/ConnectTimeoutError reason (DNS failures included). Anything we
    cannot prove happened before sending is treated as possibly sent.
    """
    name = type(exc).__name__
    if isinstance(exc, _BEFORE_SENDING) or _never_connected(exc):
        return Transient(f"{name}: the request was not sent")
    if isinstance(exc, requests.ReadTimeout):
        return OutcomeUnknown(f"{name}: no answer within {settings.WASSENGER_READ_TIMEOUT:g} s")
    return OutcomeUnknown(f"{name}: the connection failed after the request was sent")


def _never_connected(exc: requests.RequestException) -> bool:
    reason = exc.args[0] if exc.args else None
    if isinstance(reason, MaxRetryError):
        reason = reason.reason
    # NewConnectionError (refused, DNS) subclasses ConnectTimeoutError in urllib3.
    return isinstance(reason, ConnectTimeoutError)


# A proxy in front of Wassenger answered for it: the request may have reached it.
GATEWAY_GAVE_UP = (502, 504)


def _status_error(response: requests.Response) -> WassengerError:
    """The one error for a non-2xx answer (rules in the module docstring)."""
    status = response.status_code
    body = _json_or_none(response)
    error_code, detail = _error_fields(body, response)
    kwargs = {"status": status, "error_code": error_code}
    if status in (429, 503):
        return RateLimited(detail, retry_after=_retry_after(response.headers.get("Retry-After")), **kwargs)
    if status in (401, 402, 403):
        return AuthError(detail, **kwargs)
    if status in GATEWAY_GAVE_UP:
        return OutcomeUnknown(detail or f"HTTP {status} from a gateway", **kwargs)
    # 408: the server gave up waiting for our request, so it did not act on it.
    if status >= 500 or status == 408:
        return Transient(detail, **kwargs)
    words = _error_words(body)
    verdict = payloads.failure_code_verdict(words) if 400 <= status < 500 else None
    if verdict or (verdict is None and status in (400, 404, 422) and _names_the_number(words)):
        return InvalidNumber(detail, **kwargs)
    return Rejected(detail or f"unexpected HTTP {status}", **kwargs)


# A send refused whatever the message may be: the device, its queue, the template, the account.
_DEVICE_WORDS = re.compile(
    r"device|queue|freez|frozen|template|account|\bplan\b|subscription|session|not connected",
    re.IGNORECASE,
)
# On a send, answers that do not prove the message was not queued.
SEND_OUTCOME_UNKNOWN = (409, 500)


def _send_error(response: requests.Response) -> WassengerError:
    """The error of a refused POST /messages: `_status_error`, with the send's own rules."""
    error = _status_error(response)
    status = response.status_code
    if status in SEND_OUTCOME_UNKNOWN:
        detail = error.detail or f"HTTP {status}: the message may have been queued"
        return OutcomeUnknown(detail, status=status, error_code=error.error_code)
    words = _error_words(_json_or_none(response))
    # A failure code of Wassenger's is about the message, never the device.
    device_level = payloads.failure_code_verdict(words) is None and (
        status == 404 or _DEVICE_WORDS.search(words)
    )
    if type(error) is Rejected and 400 <= status < 500 and device_level:
        return DeviceRefused(error.detail, status=status, error_code=error.error_code)
    return error


def _error_fields(body: Any, response: requests.Response) -> tuple[str, str]:
    """Wassenger's (errorCode, message), or ("", a quote of whatever the body was)."""
    if isinstance(body, dict) and ("message" in body or "errorCode" in body):
        return _text(body.get("errorCode")), _text(body.get("message"))
    return "", _quote(response.content)


def _error_words(body: Any) -> str:
    """The words of a Wassenger error body: errorCode, message and errors[] ("" otherwise)."""
    if not isinstance(body, dict):
        return ""
    items = body.get("errors") if isinstance(body.get("errors"), list) else []
    return " ".join(
        [_text(body.get("errorCode")), _text(body.get("message"))]
        + [_text(v) for item in items if isinstance(item, dict) for v in item.values()]
    )


def _names_the_number(words: str) -> bool:
    """A Wassenger error about the recipient's phone (and not about our device).

    Beyond its failure codes, Wassenger's error codes are not documented, so the rule
    reads the words: e.g. 400 "Invalid phone number" → InvalidNumber.
    """
    return payloads.names_the_number(words) and not _DEVICE_WORDS.search(words)


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (a number, or an HTTP-date from now), None when unusable."""
    if not value or not value.strip():
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return _seconds_until(value.strip())
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _seconds_until(http_date: str) -> float | None:
    try:
        when = parsedate_to_datetime(http_date)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - clock.now()).total_seconds())


# --- Parsing answers ----------------------------------------------------------------


def _json_or_none(response: requests.Response) -> Any:
    try:
        return json.loads(response.content)
    except (ValueError, RecursionError):
        return None


def _success_json(
    response: requests.Response,
    expected: type | tuple[type, ...],
    error: Callable[[requests.Response], WassengerError] = _status_error,
) -> Any:
    """The JSON body of a 2xx, or the right error for a non-2xx or an unusable 2xx.

    A 2xx we cannot read is OutcomeUnknown: on a send, Wassenger may have queued it.
    """
    if not 200 <= response.status_code < 300:
        raise error(response)
    body = _json_or_none(response)
    if not isinstance(body, expected):
        raise OutcomeUnknown(f"unexpected 2xx body: {_quote(response.content)}", status=response.status_code)
    return body


def _parse_send(response: requests.Response) -> SendResult:
    body = _message_json(response, error=_send_error)
    return SendResult(
        wassenger_id=body["id"],
        whatsapp_id=_text(body.get("waId")),
        status=_text(body.get("status")),
        raw=body,
    )


def _parse_number(response: requests.Response, phone: str) -> NumberCheck:
    body = _success_json(response, dict)
    if not isinstance(body.get("exists"), bool):
        raise OutcomeUnknown("2xx without an 'exists' flag", status=response.status_code)
    return NumberCheck(
        phone=_text(body.get("phone")) or phone,
        exists=body["exists"],
        whatsapp_id=_text(body.get("wid")),
    )


def _parse_one_message(response: requests.Response) -> RemoteMessage | None:
    if response.status_code == 404:
        return None
    return _remote_message(_message_json(response))


def _message_json(response: requests.Response, **kwargs: Any) -> dict:
    body = _success_json(response, dict, **kwargs)
    if not isinstance(body.get("id"), str) or not body["id"]:
        raise OutcomeUnknown("2xx without a message id", status=response.status_code)
    return body


# Where a list of messages may sit in an object envelope (the envelope is not documented).
_ENVELOPE_KEYS = ("data", "results", "items", "messages", "docs")


def _parse_by_reference(response: requests.Response, reference: str) -> RemoteMessage | None:
    body = _success_json(response, (list, dict))
    found = [
        _remote_message(item)
        for item in _listed(body)
        if isinstance(item, dict) and item.get("reference") == reference and isinstance(item.get("id"), str)
    ]
    # Not failed first, then the latest (an absent time sorts first).
    latest = datetime.min.replace(tzinfo=UTC)
    return max(found, key=lambda m: (not m.failed, m.created_at or latest), default=None)


def _listed(body: list | dict) -> list:
    """Lenient about the envelope: a bare list, or an object holding one (under a usual
    key, else its only list)."""
    if isinstance(body, list):
        return body
    for key in _ENVELOPE_KEYS:
        if isinstance(body.get(key), list):
            return body[key]
    lists = [value for value in body.values() if isinstance(value, list)]
    return lists[0] if len(lists) == 1 else []


def _remote_message(body: dict) -> RemoteMessage:
    return RemoteMessage(
        wassenger_id=_text(body.get("id")),
        whatsapp_id=_text(body.get("waId")),
        status=_text(body.get("status")).lower(),
        delivery_status=_text(body.get("deliveryStatus")).lower(),
        reference=_text(body.get("reference")),
        raw=body,
        created_at=payloads.moment_of(body.get("createdAt")),
        sent_at=payloads.moment_of(body.get("sentAt")),
        failed_at=payloads.moment_of(body.get("failedAt")),
        # Not in SPEC's message model as far as it was read: taken when present.
        delivered_at=payloads.moment_of(body.get("deliveredAt")),
        read_at=payloads.moment_of(body.get("readAt")),
        failure_reason=payloads.failure_reason(body),
    )


def _device_state(item: dict) -> DeviceState:
    session = item.get("session") if isinstance(item.get("session"), dict) else {}
    return DeviceState(
        wassenger_id=_text(item.get("id")),
        phone=_text(item.get("phone")),
        status=_text(item.get("status")).lower(),
        session_status=_text(session.get("status")).lower(),
        plan=_text(item.get("plan")),
        raw=item,
    )


def _webhooks(body: Any) -> list[Webhook]:
    """A list of webhooks, a bare webhook, or a list under a usual key: leniently."""
    if isinstance(body, dict) and isinstance(body.get("data") or body.get("results"), list):
        body = body.get("data") or body.get("results")
    items = body if isinstance(body, list) else [body]
    return [_webhook(item) for item in items if isinstance(item, dict) and item.get("id")]


def _webhook(item: dict) -> Webhook:
    events = item.get("events") if isinstance(item.get("events"), list) else []
    device = item.get("device")
    return Webhook(
        id=_text(item.get("id")),
        url=_text(item.get("url")),
        status=_text(item.get("status")).lower(),
        events=tuple(e for e in events if isinstance(e, str)),
        device=_text(device.get("id") if isinstance(device, dict) else device),
        raw=item,
    )


def _parse_webhook(response: requests.Response) -> Webhook:
    found = _webhooks(_success_json(response, dict))
    if not found:
        raise OutcomeUnknown("2xx without a webhook id", status=response.status_code)
    return found[0]


def _template_payload(template: dict) -> dict:
    """Our template form → Wassenger's `template` field.

    SPEC shows only `{name, language}`; variables as `body: [{name, value}]` come from
    Wassenger's unconfirmed skills docs. `variables` is a list (positional: named "1",
    "2", …; an item already shaped `{"name", "value"}` passes untouched) or a dict of
    named variables.
    """
    payload = {"name": template["name"], "language": template.get("language", "")}
    variables = template.get("variables") or []
    if isinstance(variables, dict):
        variables = [{"name": str(k), "value": str(v)} for k, v in variables.items()]
    if variables:
        payload["body"] = [
            v if isinstance(v, dict) else {"name": str(i), "value": str(v)}
            for i, v in enumerate(variables, start=1)
        ]
    return payload


# --- Text hygiene -------------------------------------------------------------------


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, default=str)[:QUOTE_LIMIT]


def _quote(content: bytes) -> str:
    """A short, printable quote of a response body for an error message."""
    text = content[: QUOTE_LIMIT * 4].decode("utf-8", errors="replace")
    text = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return text[:QUOTE_LIMIT] + ("…" if len(text) > QUOTE_LIMIT else "")
