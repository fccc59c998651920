"""What happens after the sandbox accepts a message: acks, replies, failures, as webhooks.

One scheduler thread (a heap under a condition) runs every delayed step; webhook POSTs
go through a small thread pool so that a slow Relance never stalls the clock. Each
message's steps are chained (the read ack is scheduled once the delivered ack was
posted), so Relance sees them in order for one message, as it would from WhatsApp.
Payload formats follow SPEC's own examples (wassenger-api.md; tests/wassenger_shapes.py
holds them and checks every payload emitted here): Format A (one object) for
`message:out:new`, `message:out:ack` and `message:in:new`, Format B (an array) for
`message:out:failed`. As in SPEC, receipts carry no `reference` (unless
`receipt_reference`), and inbound messages come in both shapes seen for real.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import secrets
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from messaging.wassenger.sandbox.account import PLANS
from messaging.wassenger.sandbox.state import (
    SandboxConfig,
    Store,
    now_iso,
    public,
    sandbox_reply_shape,
    sandbox_reply_text,
    sandbox_writes_in_group,
)

logger = logging.getLogger("messaging.sandbox")


class Scheduler:
    """Runs callbacks after a delay, on one thread, in time order."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()  # ties keep their scheduling order
        self._condition = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="sandbox-scheduler", daemon=True)
        self._thread.start()

    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        with self._condition:
            heapq.heappush(self._heap, (time.monotonic() + max(0.0, delay), next(self._order), callback))
            self._condition.notify()

    def pending(self) -> int:
        with self._condition:
            return len(self._heap)

    def stop(self) -> None:
        with self._condition:
            self._stopped = True
            self._condition.notify()
        self._thread.join(timeout=2)

    def _run(self) -> None:
        while (callback := self._next_due()) is not None:
            try:
                callback()
            except Exception:  # one broken step must not stop the clock for the others
                logger.exception("sandbox: a scheduled step failed")

    def _next_due(self) -> Callable[[], None] | None:
        with self._condition:
            while not self._stopped:
                wait = self._heap[0][0] - time.monotonic() if self._heap else None
                if wait is not None and wait <= 0:
                    return heapq.heappop(self._heap)[2]
                self._condition.wait(wait)
            return None


class WebhookPoster:
    """POSTs events to Relance; failures are logged and retried with backoff, never raised."""

    def __init__(self, config: SandboxConfig, scheduler: Scheduler, store: Store) -> None:
        self.config = config
        self.scheduler = scheduler
        self.store = store
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="sandbox-webhook")
        # No proxy: the webhook target is usually on loopback.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self.account = None  # sandbox/account.py: which events the plan and webhook let through

    def post(self, event: dict | list, then: Callable[[], None] = lambda: None) -> None:
        """Deliver `event` (retrying), then call `then` whether it got through or not."""
        if not self.config.webhook_url:
            then()
            return
        if self.account is not None and not self.account.deliverable(event):
            self.store.count("webhooks_not_sent")  # the plan has no such event, or the webhook is off
            then()
            return
        self._submit(event, 0, then)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _submit(self, event: dict | list, attempt: int, then: Callable[[], None]) -> None:
        try:
            self._pool.submit(self._attempt, event, attempt, then)
        except RuntimeError:  # the pool is shut down: the sandbox is stopping
            pass

    def _attempt(self, event: dict | list, attempt: int, then: Callable[[], None]) -> None:
        try:
            delivered = self._deliver(event, attempt)
        except Exception:  # never let a webhook bug kill the pool's worker silently
            logger.exception("sandbox: webhook delivery crashed")
            delivered = False
        if self.account is not None:
            self.account.delivered(delivered)
            if not delivered and not self.account.deliverable(event):  # disabled meanwhile
                self.store.count("webhooks_given_up")
                then()
                return
        if delivered or attempt >= self.config.webhook_retries:
            self.store.count("webhooks_delivered" if delivered else "webhooks_given_up")
            if not delivered:
                logger.warning("sandbox: %s webhook dropped after %d attempts", _name(event), attempt + 1)
            then()
            return
        delay = self.config.webhook_backoff * 2**attempt
        self.scheduler.call_later(delay, lambda: self._submit(event, attempt + 1, then))

    def _deliver(self, event: dict | list, attempt: int) -> bool:
        # The URL comes from our settings or command line (http/https checked there).
        request = urllib.request.Request(  # noqa: S310
            self.config.webhook_url,
            data=json.dumps(event).encode(),
            headers={"Content-Type": "application/json", "User-Agent": "Wassenger-Sandbox/1.0"},
            method="POST",
        )
        where = self.config.webhook_url.split("?")[0]  # the query holds Relance's secret
        try:
            with self._opener.open(request, timeout=self.config.webhook_timeout) as response:
                status = response.status
        except urllib.error.HTTPError as error:
            status = error.code
        except (OSError, ValueError) as error:
            self.store.count("webhook_attempts_failed")
            logger.info("sandbox: webhook to %s failed (attempt %d): %s", where, attempt + 1, error)
            return False
        if 200 <= status <= 209:  # what Wassenger counts as delivered
            return True
        self.store.count("webhook_attempts_failed")
        logger.info("sandbox: webhook to %s answered %s (attempt %d)", where, status, attempt + 1)
        return False


def _name(event: dict | list) -> str:
    first = event[0] if isinstance(event, list) and event else event
    return first.get("event", "?") if isinstance(first, dict) else "?"


class Lifecycle:
    """Plays out an accepted message: sent (message:out:new) → delivered → read → maybe a
    reply, maybe a group message; or failed."""

    def __init__(self, config: SandboxConfig, store: Store, scheduler: Scheduler, poster: WebhookPoster):
        self.config = config
        self.store = store
        self.scheduler = scheduler
        self.poster = poster

    def accepted(self, message: dict, generation: int) -> None:
        # A number that does not exist fails in the queue: it never goes out, so no
        # message:out:new precedes its failure [I].
        if message["phone"].endswith(self.config.invalid_suffix):
            step = lambda: self._failed(message["id"], generation)  # noqa: E731
            self.scheduler.call_later(self.config.sent_delay + self.config.delivered_delay, step)
        else:
            step = lambda: self._sent(message["id"], generation)  # noqa: E731
            self.scheduler.call_later(self.config.sent_delay, step)

    def _sent(self, message_id: str, generation: int) -> None:
        message = self.store.update(message_id, generation, "sent", deliveryStatus="sent", sentAt=now_iso())
        if message is None:
            return
        then = lambda: self.scheduler.call_later(  # noqa: E731
            self.config.delivered_delay, lambda: self._ack(message_id, generation, "delivered")
        )
        if self.config.out_new:
            self.poster.post(self._out_new_event(message), then=then)
        else:
            then()

    def _ack(self, message_id: str, generation: int, ack: str) -> None:
        message = self.store.update(message_id, generation, ack, status="processed", deliveryStatus=ack)
        if message is not None:
            self.poster.post(self._ack_event(message, ack), then=lambda: self._after_ack(message, generation))

    def _after_ack(self, message: dict, generation: int) -> None:
        if message["deliveryStatus"] == "delivered":
            step = lambda: self._ack(message["id"], generation, "read")  # noqa: E731
            self.scheduler.call_later(self.config.read_delay, step)
            return
        cfg, phone = self.config, message["phone"]
        if message["sandbox"]["fate"] != "silent" and self.store.claim_reply(phone):
            self.scheduler.call_later(cfg.reply_delay, lambda: self._reply(message, generation))
        in_group = sandbox_writes_in_group(phone, seed=cfg.seed, group_share=cfg.group_share)
        if in_group and self.store.claim_reply(f"group:{phone}"):
            self.scheduler.call_later(cfg.reply_delay, lambda: self._group_message(message, generation))

    def _reply(self, message: dict, generation: int) -> None:
        text = sandbox_reply_text(message["phone"], message["sandbox"]["fate"], seed=self.config.seed)
        if self.store.update(message["id"], generation, f"reply:{text}") is not None:
            self.store.count("replies")
            self.poster.post(self._inbound_event(message["phone"], text))

    def _group_message(self, message: dict, generation: int) -> None:
        text = sandbox_reply_text(message["phone"], "reply", seed=self.config.seed)
        if self.store.update(message["id"], generation, f"group:{text}") is not None:
            self.store.count("group_messages")
            self.poster.post(self._inbound_event(message["phone"], text, group=True))

    def _failed(self, message_id: str, generation: int) -> None:
        changes = {
            "status": "failed",
            "deliveryStatus": "failed",
            "failedAt": now_iso(),
            "failureReason": "Phone number does not exist on WhatsApp",
        }
        message = self.store.update(message_id, generation, "failed", **changes)
        if message is not None:
            self.poster.post(self._failed_event(message))

    # --- Payloads, shaped like SPEC's examples (tests/wassenger_shapes.py checks them) ---

    def _device(self) -> dict:
        return {
            "id": self.config.device_id,
            "phone": self.config.device_phone,
            "alias": "Relance sandbox",
            # The account's plan as `GET /v1/devices` answers it, so both say the same.
            "plan": self.poster.account.plan if self.poster.account is not None else PLANS["business"],
            "version": 1,
        }

    def _out_new_event(self, message: dict) -> dict:
        """Format A `message:out:new`: the message went out (data.id = its WhatsApp id)."""
        data = self._chat_message(message["waId"], "outbound", message["phone"], message["message"])
        data.update(ack="sent", events={"sent": {"date": message["sentAt"]}})
        return {**self._envelope(message["waId"], "message:out:new"), "data": self._referenced(data, message)}

    def _ack_event(self, message: dict, ack: str) -> dict:
        """Format A `message:out:ack`, with a top-level `ack`; no `reference` unless asked."""
        events = {"sent": {"date": message["sentAt"]}, "delivered": {"date": message["sentAt"]}}
        if ack == "read":
            events["read"] = {"date": now_iso()}
        data = self._chat_message(message["waId"], "outbound", message["phone"], message["message"])
        data.update(ack=ack, events=events)
        return {
            **self._envelope(message["waId"], "message:out:ack"),
            "ack": ack,
            "data": self._referenced(data, message),
        }

    def _inbound_event(self, contact: str, text: str, *, group: bool = False) -> dict:
        """Format A `message:in:new` from `contact`, in the shape this contact's messages
        take (sandbox_reply_shape), in their one-to-one chat or in a group."""
        wa_id = "3EB0" + secrets.token_hex(8).upper()
        shape = sandbox_reply_shape(
            contact, seed=self.config.seed, spec_shape_share=self.config.spec_shape_share
        )
        # In a group the sender is the participant who wrote, whatever the shape [I].
        data = self._chat_message(wa_id, "inbound", contact, text, spec_shape=shape == "spec" and not group)
        data.update(ack="delivered", events={"sent": {"date": data["date"]}})
        if group:
            data["to"], data["toNumber"] = SANDBOX_GROUP_ID, ""
            data["chat"] = {**_chat(SANDBOX_GROUP_ID, "Sandbox group", kind="group")}
            data["meta"]["isGroup"] = True
        return {**self._envelope(wa_id, "message:in:new"), "data": data}

    def _failed_event(self, message: dict) -> list:
        """Format B `message:out:failed`: an array of gateway events; data is the message."""
        data = {**public(message), "sentAt": message.get("sentAt"), "processedAt": message["failedAt"]}
        data["schedule"] = {"enabled": False}
        data["device"] = {
            **{k: v for k, v in self._device().items() if k in ("id", "phone", "alias")},
            "status": "operative",
            "session": {"status": "online", "error": False, "lastSyncAt": now_iso()},
        }
        if not self.config.receipt_reference:
            data.pop("reference", None)
        entity_url = f"http://{self.config.host}:{self.config.port}/v1/messages/{message['id']}"
        item = {"event": "message:out:failed", "date": now_iso(), "entity": "message"}
        item.update(entityId=message["id"], entityUrl=entity_url, user="5bd7c0ffee0ddba11ab1e001", data=data)
        return [item]

    def _referenced(self, data: dict, message: dict) -> dict:
        return {**data, "reference": message["reference"]} if self.config.receipt_reference else data

    def _envelope(self, message_id: str, event: str) -> dict:
        created = int(time.time())
        return {
            "id": message_id,
            "object": "message",
            "event": event,
            "created": created,
            "device": self._device(),
        }

    def _chat_message(
        self, wa_id: str, flow: str, contact: str, body: str, *, spec_shape: bool = False
    ) -> dict:
        """The `data` of a Format A event between the device and `contact`.

        `spec_shape`: an inbound message as SPEC's own example has it, with `from` and
        `fromNumber` the device's number ("+…@c.us", its "+" kept) and only `to` and the
        chat naming the contact.
        """
        device = self.config.device_phone
        device_wid, contact_wid = f"{device[1:]}@c.us", f"{contact[1:]}@c.us"
        ours = flow == "outbound"
        if spec_shape:
            sender, receiver = (f"{device}@c.us", device), (contact_wid, contact)
        elif ours:
            sender, receiver = (device_wid, device), (contact_wid, contact)
        else:
            sender, receiver = (contact_wid, contact), (device_wid, device)
        now = datetime.now(UTC)
        date = now.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return {
            "id": wa_id,
            "type": "text",
            "flow": flow,
            "status": "active",
            "ack": "",
            "from": sender[0],
            "fromNumber": sender[1],
            "to": receiver[0],
            "toNumber": receiver[1],
            "date": date,
            "timestamp": int(now.timestamp()),
            "body": body,
            "chat": _chat(contact_wid, "Sandbox contact", contact=contact, date=date),
            "events": {},
            "meta": _meta(),
        }


SANDBOX_GROUP_ID = "120363025246125486@g.us"
_META_FLAGS = (
    "rtl containsEmoji isGif isStar isGroup isForwarded isEphemeral isNotification isLive isBroadcast "
    "isBizNotification isDoc isLinkPreview isPSA isRevoked isUnreadType isFailed"
).split()


def _meta() -> dict:
    return {**dict.fromkeys(_META_FLAGS, False), "notifyName": "Relance sandbox"}


def _chat(chat_id: str, name: str, *, kind: str = "chat", contact: str = "", date: str = "") -> dict:
    """A chat object with the fields of SPEC's examples (the contact's only for a person)."""
    date = date or now_iso()
    chat = {
        "id": chat_id,
        "name": name,
        "date": date,
        "type": kind,
        "status": "active",
        "waStatus": "active",
        "statusUpdatedAt": date,
        "deletedAt": None,
        "firstMessageAt": date,
        "lastMessageAt": date,
        "lastOutboundMessageAt": date,
        "lastInboundMessageAt": date,
        "lastReactionAt": None,
        "lastReactionEmoji": None,
        "stats": {"notes": 0, "localMessages": 1, "inboundMessages": 0, "outboundMessages": 0},
        "labels": [],
    }
    if contact:
        names = dict.fromkeys(
            ("name", "shortName", "displayName", "formattedName", "formattedShortName"), name
        )
        chat["contact"] = {"wid": chat_id, **names, "syncedAt": date, "phone": contact}
    return chat
