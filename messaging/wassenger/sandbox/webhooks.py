"""What happens after the sandbox accepts a message: acks, replies, failures, as webhooks.

One scheduler thread (a heap under a condition) runs every delayed step; webhook POSTs
go through a small thread pool so that a slow Relance never stalls the clock. Each
message's steps are chained (the read ack is scheduled once the delivered ack was
posted), so Relance sees them in order for one message, as it would from WhatsApp.
Payload formats follow wassenger-api.md: Format A (one object) for `message:out:ack`
and `message:in:new`, Format B (an array) for `message:out:failed`.
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

from messaging.wassenger.sandbox.state import SandboxConfig, Store, now_iso, public, sandbox_reply_text

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

    def post(self, event: dict | list, then: Callable[[], None] = lambda: None) -> None:
        """Deliver `event` (retrying), then call `then` whether it got through or not."""
        if not self.config.webhook_url:
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
    """Plays out an accepted message: delivered → read → maybe a reply; or failed."""

    def __init__(self, config: SandboxConfig, store: Store, scheduler: Scheduler, poster: WebhookPoster):
        self.config = config
        self.store = store
        self.scheduler = scheduler
        self.poster = poster

    def accepted(self, message: dict, generation: int) -> None:
        if message["phone"].endswith(self.config.invalid_suffix):
            step = lambda: self._failed(message["id"], generation)  # noqa: E731
        else:
            step = lambda: self._ack(message["id"], generation, "delivered")  # noqa: E731
        self.scheduler.call_later(self.config.delivered_delay, step)

    def _ack(self, message_id: str, generation: int, ack: str) -> None:
        date = now_iso()
        times = {"sentAt": date} if ack == "delivered" else {}
        message = self.store.update(
            message_id, generation, ack, status="processed", deliveryStatus=ack, **times
        )
        if message is not None:
            self.poster.post(self._ack_event(message, ack), then=lambda: self._after_ack(message, generation))

    def _after_ack(self, message: dict, generation: int) -> None:
        if message["deliveryStatus"] == "delivered":
            step = lambda: self._ack(message["id"], generation, "read")  # noqa: E731
            self.scheduler.call_later(self.config.read_delay, step)
        elif message["sandbox"]["fate"] != "silent" and self.store.claim_reply(message["phone"]):
            self.scheduler.call_later(self.config.reply_delay, lambda: self._reply(message, generation))

    def _reply(self, message: dict, generation: int) -> None:
        text = sandbox_reply_text(message["phone"], message["sandbox"]["fate"], seed=self.config.seed)
        if self.store.update(message["id"], generation, f"reply:{text}") is not None:
            self.store.count("replies")
            self.poster.post(self._reply_event(message, text))

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

    # --- Payloads ---

    def _device(self) -> dict:
        return {"id": self.config.device_id, "phone": self.config.device_phone, "alias": "Relance sandbox"}

    def _ack_event(self, message: dict, ack: str) -> dict:
        """Format A `message:out:ack`, with a top-level `ack` and our `reference` in data."""
        events = {"sent": {"date": message["sentAt"]}, "delivered": {"date": message["sentAt"]}}
        if ack == "read":
            events["read"] = {"date": now_iso()}
        data = self._chat_message(message["waId"], "outbound", message["phone"], message["message"])
        data.update(ack=ack, events=events, reference=message["reference"])
        return {**self._envelope(message["waId"], "message:out:ack"), "ack": ack, "data": data}

    def _reply_event(self, message: dict, text: str) -> dict:
        """Format A `message:in:new`: the contact writes back to the device."""
        wa_id = "3EB0" + secrets.token_hex(8).upper()
        data = self._chat_message(wa_id, "inbound", message["phone"], text)
        data.update(ack="delivered", events={})
        return {**self._envelope(wa_id, "message:in:new"), "data": data}

    def _failed_event(self, message: dict) -> list:
        """Format B `message:out:failed`: an array of gateway events."""
        data = public(message)
        data["device"] = {"id": self.config.device_id, "session": {"status": "online"}}
        entity_url = f"http://{self.config.host}:{self.config.port}/v1/messages/{message['id']}"
        item = {"event": "message:out:failed", "date": now_iso(), "entity": "message"}
        item.update(entityId=message["id"], entityUrl=entity_url, user="5bd7c0ffee0ddba11ab1e001", data=data)
        return [item]

    def _envelope(self, message_id: str, event: str) -> dict:
        created = int(time.time())
        return {
            "id": message_id,
            "object": "message",
            "event": event,
            "created": created,
            "device": self._device(),
        }

    def _chat_message(self, wa_id: str, flow: str, contact: str, body: str) -> dict:
        """The `data` of a Format A event between the device and `contact`."""
        device_wid, contact_wid = f"{self.config.device_phone[1:]}@c.us", f"{contact[1:]}@c.us"
        ours = flow == "outbound"
        now = datetime.now(UTC)
        return {
            "id": wa_id,
            "type": "text",
            "flow": flow,
            "from": device_wid if ours else contact_wid,
            "fromNumber": self.config.device_phone if ours else contact,
            "to": contact_wid if ours else device_wid,
            "toNumber": contact if ours else self.config.device_phone,
            "date": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "timestamp": int(now.timestamp()),
            "body": body,
            "chat": {
                "id": contact_wid,
                "type": "chat",
                "status": "active",
                "labels": [],
                "contact": {"phone": contact},
            },
            "meta": {"isGroup": False},
        }
