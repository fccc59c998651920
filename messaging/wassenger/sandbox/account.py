"""The sandbox's account: its number's session, status and plan, and its webhooks.

Switched live through `/sandbox/device` (a session state change with its `number:session`
event and the matching `GET /v1/devices` answer, a device status, a plan) and managed by
Relance through `GET/POST /v1/webhooks`, `GET/PATCH /v1/webhooks/{id}` and
`POST /v1/webhooks/{id}/enable` as SPEC documents them. The plan decides which events are
posted at all (wassenger-api.md §0): no `message:in:new` on Gateway, no `message:out:ack`
below Platform Business, `message:out:sent` on Gateway only. A webhook that refused
`disable_after` deliveries in a row is disabled, and nothing more is posted to it until it
is enabled again.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field

from messaging.wassenger.sandbox.state import now_iso

# The plan ids the sandbox answers, by the name the controls take.
PLANS = {"gateway": "wa-gateway", "professional": "io-professional", "business": "io-business"}
_EVERY_PLAN = {"number:session", "message:out:failed", "message:out:expired", "message:out:removed"}
PLAN_EVENTS = {
    "wa-gateway": _EVERY_PLAN | {"message:out:sent"},
    "io-professional": _EVERY_PLAN | {"message:in:new", "message:out:new"},
    "io-business": _EVERY_PLAN | {"message:in:new", "message:out:new", "message:out:ack"},
}
SESSIONS = frozenset({
    "online", "offline", "timeout", "timeout_sync", "conflict", "blocked", "error", "authorize",
    "authorizing", "new", "loading", "offline:panel", "offline:modal",
})  # fmt: skip
STATUSES = frozenset({
    "invalid", "banned", "removed", "disabled", "unpaid", "preload", "pending", "authorized",
    "verified", "operative",
})  # fmt: skip
WEBHOOK_STATUSES = frozenset({"active", "pending", "failed", "error", "removed", "disabled"})


def event_name(event: dict | list) -> str:
    first = event[0] if isinstance(event, list) and event else event
    return first.get("event", "") if isinstance(first, dict) else ""


@dataclass
class Account:
    """Thread-safe: handler threads change it, the webhook pool reads it."""

    device_id: str
    device_phone: str
    webhook_url: str = ""
    session: str = "online"
    status: str = "operative"
    plan: str = PLANS["business"]
    disable_after: int = 0  # refused deliveries in a row before a webhook is disabled; 0: never
    webhooks: dict[str, dict] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if self.webhook_url:  # the sandbox starts with Relance's webhook already registered
            self.webhook_register({"name": "Relance", "url": self.webhook_url, "events": sorted(_all())})

    # --- The device ---

    def device(self) -> dict:
        """The device object of `GET /v1/devices` (SPEC device model, trimmed)."""
        with self._lock:
            session, status, plan = self.session, self.status, self.plan
        return {
            "id": self.device_id,
            "phone": self.device_phone,
            "wid": f"{self.device_phone[1:]}@c.us",
            "alias": "Relance sandbox",
            "status": status,
            "connector": "web",
            "plan": plan,
            "session": {"status": session, "appVersion": "sandbox", "lastSyncAt": now_iso()},
            "settings": {"deliverySpeed": 0},
        }

    def change(self, changes: object) -> dict | None:
        """Apply `/sandbox/device` changes; the `number:session` event to post when the
        session changed (None otherwise). ValueError names what is wrong."""
        if not isinstance(changes, dict):
            raise ValueError("a JSON object is expected")
        unknown = sorted(set(changes) - {"session", "status", "plan", "disable_after", "then", "after"})
        if unknown:
            raise ValueError(f"unknown setting(s): {', '.join(unknown)}")
        session, status = changes.get("session"), changes.get("status")
        plan = PLANS.get(changes.get("plan"), changes.get("plan"))
        if session is not None and session not in SESSIONS:
            raise ValueError(f"session must be one of {', '.join(sorted(SESSIONS))}")
        if status is not None and status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(sorted(STATUSES))}")
        if plan is not None and plan not in PLAN_EVENTS:
            raise ValueError(f"plan must be one of {', '.join(PLANS)}")
        disable_after = changes.get("disable_after")
        if disable_after is not None and (not isinstance(disable_after, int) or disable_after < 0):
            raise ValueError("disable_after is a number of deliveries (0: never)")
        with self._lock:
            self.status = status or self.status
            self.plan = plan or self.plan
            self.disable_after = self.disable_after if disable_after is None else disable_after
            changed = session is not None and session != self.session
            self.session = session or self.session
        return self.session_event() if changed else None

    def session_event(self) -> dict:
        """`number:session` (shape undocumented [I]: Format A envelope, status in data)."""
        device = self.device()
        session = device["session"]["status"]
        data = {"id": self.device_id, "status": session, "session": {"status": session}}
        envelope = {"id": self.device_id, "object": "device", "event": "number:session"}
        return {**envelope, "created": int(time.time()), "device": device, "data": data}

    # --- Webhooks ---

    def webhook_register(self, body: object) -> dict:
        """POST /v1/webhooks: ValueError when the body is not what SPEC asks for."""
        hook = _webhook_fields(body, partial=False)
        hook.update(id=secrets.token_hex(12), status="active", retries=0, createdAt=now_iso())
        with self._lock:
            self.webhooks[hook["id"]] = hook
            return dict(hook)

    def webhook_update(self, webhook_id: str, body: object) -> dict | None:
        changes = _webhook_fields(body, partial=True)
        with self._lock:
            hook = self.webhooks.get(webhook_id)
            if hook is not None:
                hook.update(changes)
            return dict(hook) if hook else None

    def webhook_enable(self, webhook_id: str) -> dict | None:
        with self._lock:
            hook = self.webhooks.get(webhook_id)
            if hook is not None:
                hook.update(status="active", retries=0)
            return dict(hook) if hook else None

    def webhook_list(self) -> list[dict]:
        with self._lock:
            return [dict(h) for h in self.webhooks.values()]

    def webhook_get(self, webhook_id: str) -> dict | None:
        with self._lock:
            hook = self.webhooks.get(webhook_id)
            return dict(hook) if hook else None

    # --- What the poster may send ---

    def deliverable(self, event: dict | list) -> bool:
        """The plan sends this event, and Relance's webhook is active and subscribed to it."""
        name = event_name(event)
        with self._lock:
            if name not in PLAN_EVENTS[self.plan]:
                return False
            hook = self._hook_for_url()
            return hook is None or (hook["status"] == "active" and name in hook["events"])

    def delivered(self, ok: bool) -> None:
        """One delivery attempt's outcome: refused ones in a row disable the webhook."""
        with self._lock:
            hook = self._hook_for_url()
            if hook is None:
                return
            hook["retries"] = 0 if ok else hook["retries"] + 1
            if not ok:
                hook["lastFailureAt"] = now_iso()
            if self.disable_after and hook["retries"] >= self.disable_after:
                hook["status"] = "disabled"

    def _hook_for_url(self) -> dict | None:
        base = self.webhook_url.split("?")[0]
        return next((h for h in self.webhooks.values() if h["url"].split("?")[0] == base), None)


def _all() -> set[str]:
    return set().union(*PLAN_EVENTS.values())


def _webhook_fields(body: object, *, partial: bool) -> dict:
    if not isinstance(body, dict):
        raise ValueError("Invalid request body: a JSON object is expected")
    fields = {k: body[k] for k in ("name", "url", "events", "device") if k in body}
    if not partial and not all(k in fields for k in ("url", "events")):
        raise ValueError("url and events are required")
    if "url" in fields and not (
        isinstance(fields["url"], str) and fields["url"].startswith(("http://", "https://"))
    ):
        raise ValueError("url must be an http(s) URL")
    events = fields.get("events", [])
    if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
        raise ValueError("events must be a list of event names")
    if isinstance(fields.get("name"), str) and len(fields["name"]) > 30:
        raise ValueError("name is 30 characters at most")
    return fields
