"""State of the Wassenger sandbox: its configuration, fault shares and record of messages.

Everything here is plain data guarded by locks: the HTTP handler threads, the scheduler
thread and the webhook pool all read and write it.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import secrets
import threading
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from campaigns.phones import E164_REGEX

SANDBOX_DEVICE_ID = "5f0c0ffee0ddba11ab1e5eed"
SANDBOX_DEVICE_PHONE = "+33700000000"
# Case variants on purpose: Relance must recognise a stop word however it is typed.
STOP_REPLIES = ("STOP", "Stop", "stop", "ARRET", "ARRÊT", "UNSUBSCRIBE")
REPLIES = ("Yes, tell me more", "Oui, je suis intéressé", "Interested!", "Can you call me?", "Merci !")
_E164 = re.compile(E164_REGEX)


@dataclass(frozen=True)
class SandboxConfig:
    """How the sandbox behaves; built from settings and command flags."""

    token: str
    webhook_url: str = ""  # empty: no webhooks (the message lifecycle still plays out)
    host: str = "127.0.0.1"
    port: int = 8765
    device_id: str = SANDBOX_DEVICE_ID
    device_phone: str = SANDBOX_DEVICE_PHONE
    invalid_suffix: str = "0000"
    sent_delay: float = 1.0  # seconds from acceptance to message:out:new (the message went out)
    delivered_delay: float = 3.0  # seconds after message:out:new
    read_delay: float = 10.0  # seconds after the delivered ack
    reply_delay: float = 20.0  # seconds after the read ack
    reply_share: float = 0.3
    stop_share: float = 0.1  # share of the replies that are stop words
    # Share of contacts whose replies come in SPEC's own shape, where fromNumber is the
    # device's number and only the chat names the contact; the others as seen in the wild
    # (fromNumber = the contact). Both are real (wassenger-api.md, section 0).
    spec_shape_share: float = 0.5
    group_share: float = 0.0  # share of contacts who also write in a group the device is in
    # Receipts (acks, failures) carry our `reference` in data. Off by default: none of
    # Wassenger's documented examples has one, so Relance must match by id.
    receipt_reference: bool = False
    out_new: bool = True  # message:out:new once each accepted message goes out (Platform plans)
    webhook_retries: int = 3
    webhook_backoff: float = 1.0  # first retry after this, then doubling
    webhook_timeout: float = 5.0
    seed: int = 0
    state_file: str = ""  # kept across a stop and a start (an outage of Wassenger's front only)

    def check(self) -> None:
        """ValueError naming the first setting that makes no sense."""
        if self.webhook_url and urlsplit(self.webhook_url).scheme not in ("http", "https"):
            raise ValueError("the webhook URL must start with http:// or https://")
        for name in ("reply_share", "stop_share", "spec_shape_share", "group_share"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} is a share between 0 and 1")
        delays = (
            "sent_delay",
            "delivered_delay",
            "read_delay",
            "reply_delay",
            "webhook_backoff",
            "webhook_timeout",
        )
        if any(getattr(self, name) < 0 for name in delays) or self.webhook_retries < 0:
            raise ValueError(f"{', '.join(delays)} and webhook_retries cannot be negative")
        if not self.token:
            raise ValueError("the sandbox needs a token to expect (WASSENGER_API_TOKEN or --token)")

    def public(self) -> dict:
        """The configuration without its secrets (token, webhook query string)."""
        data = asdict(self)
        data.pop("token")
        data["webhook_url"] = self.webhook_url.split("?")[0]
        return data


def phone_is_e164(phone: Any) -> bool:
    return isinstance(phone, str) and bool(_E164.match(phone))


def sandbox_fate(phone: str, *, seed: int, reply_share: float, stop_share: float) -> str:
    """ "silent", "reply" or "stop": what this contact does after reading, the same every run.

    A hash of (seed, phone) rather than a random draw, so that a test can predict it.
    """
    if _unit(f"{seed}:reply:{phone}") >= reply_share:
        return "silent"
    return "stop" if _unit(f"{seed}:stop:{phone}") < stop_share else "reply"


def sandbox_reply_shape(phone: str, *, seed: int, spec_shape_share: float) -> str:
    """ "spec" (fromNumber = the device) or "contact" (fromNumber = the contact): how this
    contact's messages arrive, the same every run."""
    return "spec" if _unit(f"{seed}:shape:{phone}") < spec_shape_share else "contact"


def sandbox_writes_in_group(phone: str, *, seed: int, group_share: float) -> bool:
    """Whether this contact, once it has read its message, also writes in a group chat."""
    return _unit(f"{seed}:group:{phone}") < group_share


def sandbox_reply_text(phone: str, fate: str, *, seed: int) -> str:
    choices = STOP_REPLIES if fate == "stop" else REPLIES
    return choices[int(_unit(f"{seed}:text:{phone}") * len(choices))]


def _unit(key: str) -> float:
    """A number in [0, 1) fixed by `key`."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64


# --- Faults -------------------------------------------------------------------------

# Shares of POST /v1/messages answered by each fault; they exclude each other.
EXCLUSIVE_FAULTS = (
    "error_500",
    "rate_limit_429",
    "slow",
    "drop_after_read",
    "drop_before_accept",
    "error_500_accepted",
    "conflict_409",
    "device_not_found",
    "queue_reject",
    "queue_freeze",
)
# Faults whose message is recorded (queued) although the answer says otherwise.
ACCEPTED_THEN_ERROR = ("error_500_accepted", "conflict_409")
# Faults about the device, not the message: nothing is recorded.
DEVICE_FAULTS = ("device_not_found", "queue_reject", "queue_freeze")


@dataclass(frozen=True)
class Faults:
    error_500: float = 0.0
    rate_limit_429: float = 0.0
    rate_limit_retry_after: float = 0.5  # share of the 429s that carry Retry-After
    slow: float = 0.0  # answered after slow_seconds (beyond the client's read timeout)
    drop_after_read: float = 0.0  # recorded as accepted, then the socket is closed unanswered
    # The socket is closed unanswered and nothing is recorded: the client cannot tell this
    # from drop_after_read; only the lookup by reference can.
    drop_before_accept: float = 0.0
    # Queued, then answered 500: SPEC's 500 is "unexpected error", no proof nothing was queued.
    error_500_accepted: float = 0.0
    conflict_409: float = 0.0  # queued, then answered 409 ("already queued")
    # The device's refusals, nothing recorded: 404 device not found; 400 from a queue in
    # `reject` or `freeze` mode (WALI queue.ts), which refuses new messages.
    device_not_found: float = 0.0
    queue_reject: float = 0.0
    queue_freeze: float = 0.0
    slow_seconds: float = 35.0
    retry_after_seconds: float = 2.0

    def updated(self, changes: Any) -> Faults:
        """A copy with `changes` applied; ValueError names what is wrong."""
        if not isinstance(changes, dict):
            raise ValueError("a JSON object of fault settings is expected")
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown fault setting(s): {', '.join(unknown)}")
        new = replace(self, **{k: _number(k, v) for k, v in changes.items()})
        new.check()
        return new

    def check(self) -> None:
        for name in (*EXCLUSIVE_FAULTS, "rate_limit_retry_after"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} is a share between 0 and 1")
        if sum(getattr(self, name) for name in EXCLUSIVE_FAULTS) > 1:
            raise ValueError(f"the shares of {', '.join(EXCLUSIVE_FAULTS)} add up to more than 1")
        if self.slow_seconds < 0 or self.retry_after_seconds < 0:
            raise ValueError("slow_seconds and retry_after_seconds cannot be negative")

    def pick(self, rng: random.Random) -> str | None:
        """The fault for one request (or None), drawn from `rng`."""
        draw = rng.random()
        for name in EXCLUSIVE_FAULTS:
            share = getattr(self, name)
            if draw < share:
                return name
            draw -= share
        return None


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number")
    return float(value)


# --- The record of messages ---------------------------------------------------------


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_message(
    payload: dict, *, device_id: str, fault: str | None, fate: str, media: dict | None = None
) -> dict:
    """A Wassenger message object for an accepted send (shaped like the KEET example).

    The `sandbox` key is ours: it never leaves through /v1, only through /sandbox.
    """
    created = now_iso()
    phone = payload["phone"]
    message = {
        "id": secrets.token_hex(12),
        "waId": "3EB0" + secrets.token_hex(8).upper(),
        "phone": phone,
        "wid": f"{phone[1:]}@c.us",
        "status": "queued",
        "deliveryStatus": "queued",
        "createdAt": created,
        "deliverAt": created,
        "message": payload.get("message", ""),
        "priority": payload.get("priority", "normal"),
        "reference": payload.get("reference", ""),
        "retentionPolicy": "plan_defaults",
        "retry": {"count": 0},
        "webhookStatus": "pending",
        "media": {"format": "native", **(media or {})},
        "device": payload.get("device") or device_id,
    }
    if "template" in payload:
        message["template"] = payload["template"]
    message["sandbox"] = {"fault": fault, "fate": fate, "events": []}
    return message


def public(message: dict) -> dict:
    return {k: v for k, v in message.items() if k != "sandbox"}


# The send log keeps this many requests (the oldest go first), so a long run stays small.
SEND_LOG_LIMIT = 100_000


@dataclass
class Store:
    """Every message the sandbox accepted, every send request with its fault, and counters.
    Thread-safe.

    `generation` changes on clear(): callbacks scheduled for cleared messages see it and stop.
    """

    _messages: dict[str, dict] = field(default_factory=dict)
    _replied: set[str] = field(default_factory=set)
    _counts: Counter = field(default_factory=Counter)
    _sends: deque = field(default_factory=lambda: deque(maxlen=SEND_LOG_LIMIT))
    _files: dict[str, dict] = field(default_factory=dict)  # POST /v1/files, by id
    generation: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, message: dict) -> int:
        with self._lock:
            self._messages[message["id"]] = message
            self._counts["accepted"] += 1
            return self.generation

    def get(self, message_id: str) -> dict | None:
        with self._lock:
            message = self._messages.get(message_id)
            return _copy(message) if message else None

    def find(self, *, phone: str = "", reference: str = "") -> list[dict]:
        with self._lock:
            return [
                _copy(m)
                for m in self._messages.values()
                if (not phone or m["phone"] == phone) and (not reference or m["reference"] == reference)
            ]

    def update(self, message_id: str, generation: int, event: str, **changes: Any) -> dict | None:
        """Apply a lifecycle step; None when the message was cleared meanwhile."""
        with self._lock:
            message = self._messages.get(message_id)
            if message is None or generation != self.generation:
                return None
            message.update(changes)
            message["sandbox"]["events"].append(event)
            return _copy(message)

    def claim_reply(self, phone: str) -> bool:
        """True the first time only: a contact answers its first message, not the follow-up."""
        with self._lock:
            if phone in self._replied:
                return False
            self._replied.add(phone)
            return True

    def log_send(self, payload: dict, fault: str | None, retry_after: str | None) -> None:
        """One POST /v1/messages as the outside world saw it: when, which message, which fault.

        Time is epoch seconds, so that a test can compare it with Relance's own records.
        """
        entry = {"at": time.time(), "reference": payload.get("reference", ""), "phone": payload["phone"]}
        entry.update(fault=fault, retry_after=float(retry_after) if retry_after else None)
        with self._lock:
            self._sends.append(entry)

    def sends(self, *, reference: str = "") -> list[dict]:
        with self._lock:
            return [dict(s) for s in self._sends if not reference or s["reference"] == reference]

    def add_file(self, *, filename: str, mime: str, content: bytes) -> dict:
        """An uploaded file as Wassenger describes one [I]: the content is not kept, its digest is."""
        kind = mime.split("/", 1)[0]
        record = {
            "id": secrets.token_hex(12),
            "filename": filename,
            "mime": mime,
            "size": len(content),
            "format": kind if kind in ("image", "video", "audio") else "document",
            "sha256": hashlib.sha256(content).hexdigest(),
            "createdAt": now_iso(),
        }
        with self._lock:
            self._files[record["id"]] = record
            self._counts["files_uploaded"] += 1
        return dict(record)

    def get_file(self, file_id: str) -> dict | None:
        with self._lock:
            found = self._files.get(file_id)
            return dict(found) if found else None

    def files(self) -> list[dict]:
        with self._lock:
            return [dict(f) for f in self._files.values()]

    def count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._counts[key] += n

    def clear(self) -> int:
        with self._lock:
            deleted = len(self._messages)
            self._messages.clear()
            self._replied.clear()
            self._sends.clear()
            self._files.clear()
            self._counts.clear()
            self.generation += 1
            return deleted

    def save(self, path: str) -> None:
        """Write what the sandbox holds to `path` (atomically): a stopped sandbox started
        again with the same file remembers every message it took, as Wassenger would."""
        with self._lock:
            held = {
                "messages": self._messages,
                "replied": sorted(self._replied),
                "counts": dict(self._counts),
                "sends": list(self._sends),
                "files": self._files,
            }
            text = json.dumps(held)
        partial = f"{path}.partial"
        with open(partial, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(partial, path)

    def load(self, path: str) -> int:
        """Take back what `save` wrote (nothing when the file does not exist); how many
        messages. Their lifecycle does not resume: they stay at the step they had reached."""
        if not os.path.exists(path):
            return 0
        with open(path, encoding="utf-8") as file:
            held = json.load(file)
        with self._lock:
            self._messages.update(held["messages"])
            self._replied.update(held["replied"])
            self._counts.update(held["counts"])
            self._sends.extend(held["sends"])
            self._files.update(held["files"])
            return len(self._messages)

    def stats(self) -> dict:
        with self._lock:
            phones = {m["phone"] for m in self._messages.values()}
            faults = Counter(m["sandbox"]["fault"] for m in self._messages.values())
            return {
                "messages": len(self._messages),
                "phones": len(phones),
                "accepted_with_fault": {k: v for k, v in faults.items() if k},
                "counts": dict(self._counts),
            }


def _copy(message: dict) -> dict:
    copied = dict(message)
    copied["sandbox"] = {**message["sandbox"], "events": list(message["sandbox"]["events"])}
    return copied
