"""A local stand-in for the Wassenger API (`manage.py wassenger_sandbox`).

It answers the /v1 calls Relance makes the way Wassenger does (message objects, error
bodies, a `Token` header), keeps a record of every message it accepted (/sandbox/…),
injects faults on POST /v1/messages on demand, and calls Relance's webhook back
(webhooks.py). Faults that lose the answer (slow, dropped after read) still record
the message, drop_before_accept does not: "was it really sent?" stays answerable through
/sandbox/messages.

    /v1/messages               POST send · GET list (?reference=…&reference=…&phone=…&page=&size=)
    /v1/messages/{id}          GET
    /v1/files                  POST multipart `file`: an attachment, answered as a list of one file
                               object; a send's `media` names it ({"file": id}) or a URL ({"url"})
    /v1/numbers/exists         POST {"phone"} or GET ?phone=…
    /v1/devices, /v1/devices/{id}   (session, status and plan from sandbox/account.py)
    /v1/webhooks               GET list · POST register
    /v1/webhooks/{id}          GET · PATCH · /enable POST
    /sandbox/device            GET · POST {"session", "status", "plan", "disable_after",
                               "then", "after"}: a live session / ban / plan change
    /sandbox/messages          GET (?phone=…&reference=…) · DELETE clears (the send log too)
    /sandbox/sends             GET every send request, faulty or not (?reference=…)
    /sandbox/files             GET every uploaded file (filename, mime, size, sha256)
    /sandbox/stats             GET counts
    /sandbox/faults            GET · POST {"error_500": 0.1, …}
    /sandbox/config            GET (without secrets)
"""

from __future__ import annotations

import email.parser
import email.policy
import hmac
import json
import logging
import random
import re
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, urlsplit

from messaging.wassenger.sandbox.account import SESSIONS, Account
from messaging.wassenger.sandbox.state import (
    ACCEPTED_THEN_ERROR,
    DEVICE_FAULTS,
    SANDBOX_DEVICE_ID,
    Faults,
    SandboxConfig,
    Store,
    new_message,
    phone_is_e164,
    public,
    sandbox_fate,
)
from messaging.wassenger.sandbox.webhooks import Lifecycle, Scheduler, WebhookPoster

logger = logging.getLogger("messaging.sandbox")

MAX_BODY_BYTES = 1_000_000
MAX_UPLOAD_BYTES = 110 * 1024 * 1024  # a multipart upload: WhatsApp's documents go to 100 MB
PRIORITIES = ("low", "normal", "high", "urgent")


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: object = None  # parsed JSON; None when empty
    lists: dict[str, list[str]] = field(default_factory=dict)  # every value of each query key
    raw: bytes = b""  # a multipart body, as received


@dataclass
class Reply:
    status: int
    body: object = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # the "slow" fault: answer after this many seconds
    drop: bool = False  # the "drop_after_read" fault: close the socket, answer nothing


def error_reply(status: int, message: str, code: str, **headers: str) -> Reply:
    """Wassenger's error body (SPEC `error` definition)."""
    body = {"status": status, "message": message, "errorCode": code, "errors": [], "meta": {}}
    return Reply(status, body, headers)


class Sandbox:
    """The sandbox application: routes requests to handlers over shared, locked state."""

    def __init__(self, config: SandboxConfig, faults: Faults | None = None) -> None:
        self.faults = faults or Faults()
        self.faults.check()
        self.server = _Server((config.host, config.port), _Handler)
        self.server.sandbox = self
        # With port 0 the system picks a free port: the config must say which.
        self.config = config = replace(config, port=self.server.server_address[1])
        self.store = Store()
        if config.state_file:
            self.store.load(config.state_file)
        self.stopping = threading.Event()
        self._rng = random.Random(config.seed)
        self._rng_lock = threading.Lock()
        self.scheduler = Scheduler()
        self.poster = WebhookPoster(config, self.scheduler, self.store)
        self.lifecycle = Lifecycle(config, self.store, self.scheduler, self.poster)
        self.account = Account(config.device_id, config.device_phone, webhook_url=config.webhook_url)
        self.poster.account = self.account

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.config.port}"

    def serve_forever(self) -> None:
        try:
            self.server.serve_forever(poll_interval=0.2)
        finally:
            self.close()

    def close(self) -> None:
        self.stopping.set()
        self.scheduler.stop()
        self.poster.close()
        self.server.server_close()
        if self.config.state_file:
            self.store.save(self.config.state_file)

    def handle(self, request: Request) -> Reply:
        """Answer one request; never raises (a bug becomes a 500 and a log line)."""
        route = _route(request.method, request.path)
        if isinstance(route, Reply):
            return route
        handler, args = route
        if request.path.startswith("/v1/") and not self._authorized(request):
            self.store.count("refused_unauthorized")
            return error_reply(401, "Invalid or missing API token", "error:unauthorized")
        try:
            return handler(self, request, *args)
        except Exception:
            logger.exception("sandbox: %s %s failed", request.method, request.path)
            return error_reply(500, "Sandbox internal error", "error:internal")

    def _authorized(self, request: Request) -> bool:
        given = request.headers.get("token") or request.query.get("token", "")
        return hmac.compare_digest(given.encode(), self.config.token.encode())

    # --- /v1/messages ---

    def send(self, request: Request) -> Reply:
        invalid = _send_problem(request.body) or self._media_problem(request.body)
        if invalid:
            self.store.count("refused_invalid")
            return invalid
        fault, retry_after = self._draw_fault()
        self.store.log_send(request.body, fault, retry_after)
        if fault in ("error_500", "rate_limit_429", *DEVICE_FAULTS):
            self.store.count(f"refused_{fault}")
            return _fault_reply(fault, retry_after)
        if fault == "drop_before_accept":
            self.store.count("dropped_unrecorded")
            return Reply(0, drop=True)
        message = self._accept(request.body, fault)
        if fault == "drop_after_read":
            return Reply(0, drop=True)
        if fault in ACCEPTED_THEN_ERROR:
            return _fault_reply(fault, retry_after)
        delay = self.faults.slow_seconds if fault == "slow" else 0.0
        return Reply(201, public(message), delay=delay)

    def _draw_fault(self) -> tuple[str | None, str | None]:
        faults = self.faults  # one consistent snapshot even if POST /sandbox/faults runs now
        with self._rng_lock:
            fault = faults.pick(self._rng)
            with_header = self._rng.random() < faults.rate_limit_retry_after
        retry_after = f"{faults.retry_after_seconds:g}" if with_header else None
        return fault, retry_after

    def _accept(self, payload: dict, fault: str | None) -> dict:
        cfg = self.config
        fate = sandbox_fate(
            payload["phone"], seed=cfg.seed, reply_share=cfg.reply_share, stop_share=cfg.stop_share
        )
        media = self._media_received(payload.get("media"))
        message = new_message(payload, device_id=cfg.device_id, fault=fault, fate=fate, media=media)
        generation = self.store.add(message)
        self.lifecycle.accepted(message, generation)
        return message

    def _media_problem(self, body: dict) -> Reply | None:
        """A 400 for a `media` Wassenger could not send: a file it does not have, a URL that is not one."""
        media = body.get("media")
        if media is None:
            return None
        file_id, url = (media.get(key) if isinstance(media, dict) else None for key in ("file", "url"))
        if isinstance(file_id, str) and self.store.get_file(file_id):
            return None
        if isinstance(url, str) and urlsplit(url).scheme in ("http", "https") and urlsplit(url).netloc:
            return None
        return error_reply(
            400, "Invalid media: an uploaded file id or a public URL is required", "error:invalid_media"
        )

    def _media_received(self, media: object) -> dict | None:
        """What the message carries: the request's `media`, with the uploaded file's facts."""
        if not isinstance(media, dict):
            return None
        uploaded = self.store.get_file(media.get("file", "")) if isinstance(media.get("file"), str) else None
        facts = {key: uploaded[key] for key in ("mime", "size", "sha256")} if uploaded else {}
        return {**media, **facts}

    # --- /v1/files ---

    def upload_file(self, request: Request) -> Reply:
        part = _multipart_file(request)
        if part is None:
            return error_reply(400, "A multipart body with a `file` part is required", "error:invalid_file")
        filename, mime, content = part
        if not content:
            return error_reply(400, "The file is empty", "error:invalid_file")
        return Reply(201, [self.store.add_file(filename=filename, mime=mime, content=content)])

    def sandbox_files(self, request: Request) -> Reply:
        return Reply(200, self.store.files())

    def list_messages(self, request: Request) -> Reply:
        """`GET /v1/messages` as section 0 has it: `reference` is an array filter (repeated,
        or `reference[]`), `page` from 0 and `size` (default 20). The answer is a bare list,
        one of the two envelopes the client accepts."""
        references = request.lists.get("reference", []) + request.lists.get("reference[]", [])
        page, size = _int(request.query.get("page"), 0), _int(request.query.get("size"), 20)
        if not 1 <= size <= 100:
            return error_reply(400, "size must be between 1 and 100", "error:invalid_query")
        found = self.store.find(phone=request.query.get("phone", ""))
        found = [m for m in found if not references or m["reference"] in references]
        return Reply(200, [public(m) for m in found[page * size : (page + 1) * size]])

    def get_message(self, request: Request, message_id: str) -> Reply:
        message = self.store.get(message_id)
        if message is None:
            return error_reply(404, "Message not found", "error:not_found")
        return Reply(200, public(message))

    # --- /v1/numbers, /v1/devices ---

    def number_exists(self, request: Request) -> Reply:
        body = request.body if isinstance(request.body, dict) else {}
        phone = body.get("phone", request.query.get("phone", ""))
        if not phone_is_e164(phone):
            self.store.count("refused_invalid")
            return error_reply(
                400, "Invalid phone number: E.164 expected (+ and digits)", "error:invalid_phone"
            )
        self.store.count("number_checks")
        exists = not phone.endswith(self.config.invalid_suffix)
        digits = phone[1:]
        return Reply(200, {"exists": exists, "phone": phone, "wid": f"{digits}@c.us" if exists else None,
                           "isBusiness": False, "link": f"https://wa.me/{digits}"})  # fmt: skip

    def devices(self, request: Request) -> Reply:
        return Reply(200, [self.account.device()])

    def device(self, request: Request, device_id: str) -> Reply:
        if device_id != self.config.device_id:
            return error_reply(404, "Device not found", "error:not_found")
        return Reply(200, self.account.device())

    # --- /v1/webhooks (sandbox/account.py) ---

    def webhooks(self, request: Request) -> Reply:
        return Reply(200, self.account.webhook_list())

    def webhook_create(self, request: Request) -> Reply:
        try:
            return Reply(201, self.account.webhook_register(request.body))
        except ValueError as error:
            return error_reply(400, str(error), "error:invalid_body")

    def webhook(self, request: Request, webhook_id: str) -> Reply:
        try:
            found = (
                self.account.webhook_update(webhook_id, request.body)
                if request.method == "PATCH"
                else self.account.webhook_get(webhook_id)
            )
        except ValueError as error:
            return error_reply(400, str(error), "error:invalid_body")
        return Reply(200, found) if found else error_reply(404, "Webhook not found", "error:not_found")

    def webhook_enable(self, request: Request, webhook_id: str) -> Reply:
        found = self.account.webhook_enable(webhook_id)
        return Reply(200, found) if found else error_reply(404, "Webhook not found", "error:not_found")

    def sandbox_device(self, request: Request) -> Reply:
        """GET the device · POST {"session", "status", "plan", "disable_after", "then", "after"}:
        a session change posts its `number:session` event; `then` is a second session state
        `after` seconds later (offline, then online)."""
        if request.method == "POST":
            body = request.body if isinstance(request.body, dict) else {}
            then, after = body.get("then"), body.get("after", 5)
            try:
                if then is not None and then not in SESSIONS:
                    raise ValueError("then is a session state")
                if isinstance(after, bool) or not isinstance(after, int | float) or after < 0:
                    raise ValueError("after is a number of seconds")
                event = self.account.change(request.body)
            except ValueError as error:
                return error_reply(400, str(error), "error:invalid_device")
            if event is not None:
                self.poster.post(event)
            if then is not None:
                self.scheduler.call_later(float(after), lambda: self._session_later(then))
        return Reply(200, {**self.account.device(), "disable_after": self.account.disable_after,
                           "webhooks": self.account.webhook_list()})  # fmt: skip

    def _session_later(self, session: str) -> None:
        event = self.account.change({"session": session})
        if event is not None:
            self.poster.post(event)

    # --- /sandbox ---

    def sandbox_messages(self, request: Request) -> Reply:
        found = self.store.find(
            phone=request.query.get("phone", ""), reference=request.query.get("reference", "")
        )
        return Reply(200, found)

    def sandbox_sends(self, request: Request) -> Reply:
        return Reply(200, self.store.sends(reference=request.query.get("reference", "")))

    def sandbox_clear(self, request: Request) -> Reply:
        return Reply(200, {"deleted": self.store.clear()})

    def sandbox_stats(self, request: Request) -> Reply:
        return Reply(200, {**self.store.stats(), "scheduled_steps": self.scheduler.pending()})

    def sandbox_faults(self, request: Request) -> Reply:
        if request.method == "POST":
            try:
                self.faults = self.faults.updated(request.body)
            except ValueError as error:
                return error_reply(400, str(error), "error:invalid_faults")
        return Reply(200, asdict(self.faults))

    def sandbox_config(self, request: Request) -> Reply:
        return Reply(200, self.config.public())


Handler = Callable[..., Reply]
_ROUTES: list[tuple[str, re.Pattern, Handler]] = [
    ("POST", re.compile(r"/v1/messages"), Sandbox.send),
    ("GET", re.compile(r"/v1/messages"), Sandbox.list_messages),
    ("GET", re.compile(r"/v1/messages/([^/]+)"), Sandbox.get_message),
    ("POST", re.compile(r"/v1/files"), Sandbox.upload_file),
    ("GET", re.compile(r"/sandbox/files"), Sandbox.sandbox_files),
    ("POST", re.compile(r"/v1/numbers/exists"), Sandbox.number_exists),
    ("GET", re.compile(r"/v1/numbers/exists"), Sandbox.number_exists),
    ("GET", re.compile(r"/v1/devices"), Sandbox.devices),
    ("GET", re.compile(r"/v1/devices/([^/]+)"), Sandbox.device),
    ("GET", re.compile(r"/v1/webhooks"), Sandbox.webhooks),
    ("POST", re.compile(r"/v1/webhooks"), Sandbox.webhook_create),
    ("GET", re.compile(r"/v1/webhooks/([^/]+)"), Sandbox.webhook),
    ("PATCH", re.compile(r"/v1/webhooks/([^/]+)"), Sandbox.webhook),
    ("POST", re.compile(r"/v1/webhooks/([^/]+)/enable"), Sandbox.webhook_enable),
    ("GET", re.compile(r"/sandbox/device"), Sandbox.sandbox_device),
    ("POST", re.compile(r"/sandbox/device"), Sandbox.sandbox_device),
    ("GET", re.compile(r"/sandbox/messages"), Sandbox.sandbox_messages),
    ("DELETE", re.compile(r"/sandbox/messages"), Sandbox.sandbox_clear),
    ("GET", re.compile(r"/sandbox/sends"), Sandbox.sandbox_sends),
    ("GET", re.compile(r"/sandbox/stats"), Sandbox.sandbox_stats),
    ("GET", re.compile(r"/sandbox/faults"), Sandbox.sandbox_faults),
    ("POST", re.compile(r"/sandbox/faults"), Sandbox.sandbox_faults),
    ("GET", re.compile(r"/sandbox/config"), Sandbox.sandbox_config),
]


def _route(method: str, path: str) -> tuple[Handler, tuple[str, ...]] | Reply:
    path = path.rstrip("/") or "/"
    allowed = False
    for route_method, pattern, handler in _ROUTES:
        match = pattern.fullmatch(path)
        if match and route_method == method:
            return handler, match.groups()
        allowed = allowed or bool(match)
    if allowed:
        return error_reply(405, f"Method {method} not allowed here", "error:method_not_allowed")
    return error_reply(404, "Not found", "error:not_found")


def _multipart_file(request: Request) -> tuple[str, str, bytes] | None:
    """(filename, content type, bytes) of the `file` part of a multipart/form-data body."""
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        return None
    envelope = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    parsed = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(envelope + request.raw)
    for part in parsed.iter_parts() if parsed.is_multipart() else ():
        if part.get_param("name", header="content-disposition") == "file":
            filename = part.get_filename() or "file"
            return filename, part.get_content_type(), part.get_payload(decode=True) or b""
    return None


def _send_problem(body: object) -> Reply | None:
    """A 400 for a send Wassenger would refuse at once, or None."""
    if not isinstance(body, dict):
        return error_reply(400, "Invalid request body: a JSON object is expected", "error:invalid_body")
    if not phone_is_e164(body.get("phone")):
        return error_reply(400, "Invalid phone number: E.164 expected (+ and digits)", "error:invalid_phone")
    has_text = isinstance(body.get("message"), str) and body["message"].strip()
    has_template = isinstance(body.get("template"), dict) and body["template"].get("name")
    if not has_text and not has_template:
        return error_reply(400, "A message text or a template is required", "error:invalid_message")
    if body.get("priority", "normal") not in PRIORITIES:
        return error_reply(400, f"priority must be one of {', '.join(PRIORITIES)}", "error:invalid_priority")
    if not isinstance(body.get("reference", ""), str) or not isinstance(body.get("device", ""), str):
        return error_reply(400, "reference and device must be strings", "error:invalid_body")
    return None


_FAULT_ERRORS = {
    "error_500": (500, "Internal server error (sandbox fault)", "error:internal"),
    "error_500_accepted": (500, "Internal server error (sandbox fault)", "error:internal"),
    "conflict_409": (409, "Conflict: the message is already queued (sandbox fault)", "error:conflict"),
    "device_not_found": (404, "Device not found (sandbox fault)", "error:device_not_found"),
    "queue_reject": (400, "Device queue is in reject mode: new messages are refused", "queue:reject"),
    "queue_freeze": (400, "Device queue is frozen: new messages are refused", "queue:freeze"),
}


def _int(value: str | None, default: int) -> int:
    return int(value) if value is not None and value.strip().isdigit() else default


def _fault_reply(fault: str, retry_after: str | None) -> Reply:
    if fault in _FAULT_ERRORS:
        return error_reply(*_FAULT_ERRORS[fault])
    headers = {"Retry-After": retry_after} if retry_after else {}
    return error_reply(
        429, "Too many requests, try again later (sandbox fault)", "error:rate_limit", **headers
    )


# --- HTTP plumbing ------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    sandbox: Sandbox

    def handle_error(self, request, client_address) -> None:
        # Clients hanging up on a slow answer are part of the game, not tracebacks.
        logger.debug("sandbox: connection from %s ended with an error", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "WassengerSandbox/1.0"

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def _serve(self) -> None:
        request = self._read()
        if isinstance(request, Reply):
            self._write(request)
            return
        reply = self.server.sandbox.handle(request)
        if reply.drop:
            self.close_connection = True  # the socket closes with no answer at all
            return
        if reply.delay and self.server.sandbox.stopping.wait(reply.delay):
            return
        self._write(reply)

    def _read(self) -> Request | Reply:
        split = urlsplit(self.path)
        lists = parse_qs(split.query)
        query = {k: v[0] for k, v in lists.items()}
        length = self.headers.get("Content-Length", "0").strip()
        length = int(length) if length.isascii() and length.isdigit() else 0
        headers = {k.lower(): v for k, v in self.headers.items()}
        multipart = headers.get("content-type", "").startswith("multipart/form-data")
        if length > (MAX_UPLOAD_BYTES if multipart else MAX_BODY_BYTES):
            return error_reply(413, "Request body too large", "error:payload_too_large")
        raw = self.rfile.read(length) if length > 0 else b""
        if multipart:
            return Request(self.command, split.path, query, headers, None, lists, raw=raw)
        try:
            body = json.loads(raw) if raw.strip() else None
        except ValueError:
            return error_reply(400, "Invalid JSON body", "error:invalid_json")
        return Request(self.command, split.path, query, headers, body, lists)

    def _write(self, reply: Reply) -> None:
        payload = json.dumps(reply.body).encode()
        try:
            self.send_response(reply.status)
            for name, value in {"Content-Type": "application/json", **reply.headers}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except OSError:  # the client gave up (a slow answer past its read timeout)
            self.close_connection = True

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # The path without its query: a client may pass ?token=….
        logger.debug("sandbox: %s %s %s", self.command, urlsplit(self.path).path, code)

    def log_message(self, format: str, *args: object) -> None:
        logger.debug("sandbox: " + format, *args)


def sandbox_config(**overrides: object) -> SandboxConfig:
    """The configuration from settings, with the given (non-None) overrides.

    Webhooks go to Relance's own endpoint unless `webhook_url` says otherwise ("" = none).
    """
    from django.conf import settings

    values = {
        "token": settings.WASSENGER_API_TOKEN,
        "webhook_url": f"{settings.RELANCE_BASE_URL.rstrip('/')}/webhooks/wassenger/"
        f"?secret={quote(settings.WASSENGER_WEBHOOK_SECRET, safe='')}",
        "host": settings.WASSENGER_SANDBOX_HOST,
        "port": settings.WASSENGER_SANDBOX_PORT,
        "device_id": settings.WASSENGER_DEVICE_ID or SANDBOX_DEVICE_ID,
        "invalid_suffix": settings.WASSENGER_SANDBOX_INVALID_SUFFIX,
        "sent_delay": settings.WASSENGER_SANDBOX_SENT_DELAY,
        "delivered_delay": settings.WASSENGER_SANDBOX_DELIVERED_DELAY,
        "read_delay": settings.WASSENGER_SANDBOX_READ_DELAY,
        "reply_delay": settings.WASSENGER_SANDBOX_REPLY_DELAY,
        "reply_share": settings.WASSENGER_SANDBOX_REPLY_SHARE,
        "stop_share": settings.WASSENGER_SANDBOX_STOP_SHARE,
        "spec_shape_share": settings.WASSENGER_SANDBOX_SPEC_SHAPE_SHARE,
        "group_share": settings.WASSENGER_SANDBOX_GROUP_SHARE,
        "receipt_reference": settings.WASSENGER_SANDBOX_RECEIPT_REFERENCE,
        "webhook_retries": settings.WASSENGER_SANDBOX_WEBHOOK_RETRIES,
        "seed": settings.WASSENGER_SANDBOX_SEED,
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    config = SandboxConfig(**values)
    config.check()
    return config
