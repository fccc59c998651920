"""Wassenger faked at the HTTP boundary with `responses`, for in-process tests.

It accepts sends and records them (phone, reference, time on the test clock), answers
lookups by id and by reference, and plays a script of faults for the next requests:
"500", "501", "429", "429:<seconds>", "invalid", "401", "timeout_accepted" (the message was
taken but the answer is lost), "timeout_lost" (nothing was taken, no answer),
"504_accepted" (taken, then a gateway timed out and answered 504), "500_accepted" and
"409_accepted" (taken, then answered 500 / 409), "device_404" and "queue_freeze" (the
device's refusals, nothing taken), "connection_refused" (Wassenger unreachable, nothing
sent). Every send request is kept in `requests` (phone, time), answered or not. Lookups
answer Wassenger's message objects, with their `createdAt`; a test may change a record's
`status`/`failure_reason` (Wassenger's verdict).
"""

import json
import re
from dataclasses import dataclass, field
from datetime import datetime

import requests
import responses
from django.conf import settings

from config import clock


@dataclass
class Accepted:
    phone: str
    reference: str
    text: str
    at: datetime
    wassenger_id: str
    status: str = "queued"
    delivery_status: str = "queued"
    failure_reason: str = ""


@dataclass
class Request:
    phone: str
    at: datetime


@dataclass
class FakeWassenger:
    accepted: list[Accepted] = field(default_factory=list)
    script: list[str] = field(default_factory=list)
    requests_seen: int = 0
    requests: list[Request] = field(default_factory=list)  # every send request, answered or not
    checked: list[tuple[str, datetime]] = field(default_factory=list)  # numbers/exists: phone, time

    def phones(self) -> list[str]:
        return [a.phone for a in self.accepted]

    def send(self, request):
        self.requests_seen += 1
        body = json.loads(request.body)
        self.requests.append(Request(body["phone"], clock.now()))
        fault = self.script.pop(0) if self.script else "ok"
        if fault in ("ok", "timeout_accepted", "504_accepted", "500_accepted", "409_accepted"):
            record = self._accept(body)
            if fault == "timeout_accepted":
                raise requests.exceptions.ReadTimeout("read timed out")
            if fault == "504_accepted":
                return 504, {}, "<html>504 Gateway Time-out</html>"
            if fault in ("500_accepted", "409_accepted"):
                return _fault_response(fault.split("_")[0])
            return 201, {}, json.dumps(_message_json(record))
        return _fault_response(fault)

    def _accept(self, body: dict) -> Accepted:
        record = Accepted(
            phone=body["phone"],
            reference=body["reference"],
            text=body.get("message", ""),
            at=clock.now(),
            wassenger_id=f"{len(self.accepted) + 1:024x}",
        )
        self.accepted.append(record)
        return record

    def number_exists(self, request):
        """numbers/exists: a phone ending 0000 is not on WhatsApp (as in the sandbox)."""
        self.requests_seen += 1
        fault = self.script.pop(0) if self.script else "ok"
        if fault != "ok":
            return _fault_response(fault)
        phone = json.loads(request.body)["phone"]
        self.checked.append((phone, clock.now()))
        exists = not phone.endswith("0000")
        body = {"exists": exists, "phone": phone, "wid": f"{phone[1:]}@c.us" if exists else None}
        return 200, {}, json.dumps(body)

    def by_reference(self, request):
        reference = request.params.get("reference")
        found = [_message_json(a) for a in self.accepted if a.reference == reference]
        return 200, {}, json.dumps(found)

    def by_id(self, request):
        wassenger_id = request.url.rsplit("/", 1)[-1]
        for record in self.accepted:
            if record.wassenger_id == wassenger_id:
                return 200, {}, json.dumps(_message_json(record))
        return 404, {}, json.dumps({"status": 404, "message": "Not found"})


def _message_json(record: Accepted) -> dict:
    body = {
        "id": record.wassenger_id,
        "waId": f"WA{record.wassenger_id[-8:]}",
        "phone": record.phone,
        "reference": record.reference,
        "status": record.status,
        "deliveryStatus": record.delivery_status,
        "createdAt": record.at.isoformat().replace("+00:00", "Z"),
    }
    return body | ({"failureReason": record.failure_reason} if record.failure_reason else {})


def _fault_response(fault: str):
    if fault == "timeout_lost":
        raise requests.exceptions.ReadTimeout("read timed out")
    if fault == "connection_refused":
        raise requests.exceptions.ConnectTimeout("connection refused")
    if fault.startswith("429"):
        headers = {"Retry-After": fault.split(":")[1]} if ":" in fault else {}
        return 429, headers, json.dumps({"status": 429, "message": "Too many requests"})
    status, message = {
        "500": (500, "Internal error"),
        "501": (501, "Not implemented"),
        "409": (409, "Conflict"),
        "device_404": (404, "Device not found"),
        "queue_freeze": (400, "Device queue is frozen: new messages are refused"),
        "invalid": (400, "Invalid phone number: the number does not exist on WhatsApp"),
        "401": (401, "Invalid API token"),
    }[fault]
    return status, {}, json.dumps({"status": status, "message": message, "errorCode": f"error:{status}"})


def install(mock: responses.RequestsMock) -> FakeWassenger:
    fake = FakeWassenger()
    base = settings.WASSENGER_API_URL
    mock.add_callback(responses.POST, f"{base}/messages", callback=fake.send)
    mock.add_callback(responses.GET, f"{base}/messages", callback=fake.by_reference)
    mock.add_callback(responses.POST, f"{base}/numbers/exists", callback=fake.number_exists)
    mock.add_callback(responses.GET, re.compile(rf"{re.escape(base)}/messages/\w+"), callback=fake.by_id)
    return fake
