"""The requests Relance may send to Wassenger, as ../shared/wassenger-api.md documents them.

`request_problems` checks one request the client sent (a `requests.PreparedRequest`, as
`responses` records it) and names what departs from the documented shapes: the `Token`
header (section 1), the `POST /v1/messages` body (section 2), the `GET /v1/messages` lookup
(section 0: `reference` an array filter, `page` from 0, `size`), `GET /v1/messages/{id}`
and `POST /v1/numbers/exists` (section 4). Paths this table does not know are checked for
the token only.
"""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs, urlsplit

E164 = re.compile(r"^\+[1-9]\d{6,14}$")
HEX24 = re.compile(r"^[0-9a-f]{24}$")
# Section 2: every field of the SPEC message model and N8N's queue controls.
SEND_FIELDS = {
    *("phone", "group", "channel", "message", "device", "media", "template", "priority"),
    *("deliverAt", "expiration", "reference", "live", "enqueue", "retries", "order"),
    *("agent", "quote", "typing", "sendReadAck", "label", "actions"),
}
TARGETS = ("phone", "group", "channel")
PRIORITIES = {"low", "normal", "high", "urgent"}
# Section 0: the filters of GET /v1/messages (WALI outboundMessages.ts), paging included.
LOOKUP_FILTERS = {
    *("reference", "ids", "waIds", "phone", "status", "deliveryStatus", "devices"),
    *("after", "before", "page", "size"),
}


def request_problems(request, *, token: str) -> list[str]:
    problems = [] if request.headers.get("Token") == token else ["no Token header with the API token"]
    problems += [f"unexpected {name} header" for name in ("Authorization",) if name in request.headers]
    split = urlsplit(request.url)
    path = split.path.split("/v1", 1)[-1]
    query = parse_qs(split.query, keep_blank_values=True)
    if request.method == "POST" and path == "/messages":
        problems += _send_problems(_json(request.body))
    elif request.method == "GET" and path == "/messages":
        problems += _lookup_problems(query)
    elif request.method == "GET" and path.startswith("/messages/"):
        problems += [] if HEX24.match(path.rsplit("/", 1)[-1]) else ["a message id is 24 hex digits"]
    elif path == "/numbers/exists":
        problems += _number_problems(request.method, _json(request.body), query)
    return problems


def _json(body) -> object:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return "<not JSON>"


def _send_problems(body: object) -> list[str]:
    if not isinstance(body, dict):
        return ["POST /messages needs a JSON object"]
    problems = [f"undocumented field {key!r}" for key in sorted(set(body) - SEND_FIELDS)]
    if sum(key in body for key in TARGETS) != 1:
        problems.append("exactly one of phone, group, channel")
    if "phone" in body and not E164.match(str(body["phone"])):
        problems.append(f"phone {body['phone']!r} is not E.164 with +")
    if ("message" in body) == ("template" in body):
        problems.append("a text message or a template, not both, not neither")
    if "message" in body and not (isinstance(body["message"], str) and body["message"].strip()):
        problems.append("message is a non-empty text")
    if "template" in body:
        problems += _template_problems(body["template"])
    if body.get("priority", "normal") not in PRIORITIES:
        problems.append(f"priority {body['priority']!r} is not one of {sorted(PRIORITIES)}")
    if "device" in body and not HEX24.match(str(body["device"])):
        problems.append("device is Wassenger's 24-hex id")
    if not isinstance(body.get("reference", ""), str):
        problems.append("reference is free text")
    return problems


def _template_problems(template: object) -> list[str]:
    if not isinstance(template, dict) or not template.get("name"):
        return ["template is {name, language, body?}"]
    body = template.get("body", [])
    pairs = isinstance(body, list) and all(isinstance(v, dict) and set(v) == {"name", "value"} for v in body)
    return (
        []
        if pairs and set(template) <= {"name", "language", "body"}
        else ["template body is [{name, value}]"]
    )


def _lookup_problems(query: dict[str, list[str]]) -> list[str]:
    problems = [f"undocumented filter {key!r}" for key in sorted(set(query) - LOOKUP_FILTERS)]
    for key in ("page", "size"):
        values = query.get(key, ["0" if key == "page" else "20"])
        if len(values) != 1 or not values[0].isdigit():
            problems.append(f"{key} is one whole number")
    if query.get("size") and query["size"][0].isdigit() and not 1 <= int(query["size"][0]) <= 100:
        problems.append("size between 1 and 100")
    if not query.get("reference") or not all(query["reference"]):
        problems.append("a lookup names its reference(s)")
    return problems


def _number_problems(method: str, body: object, query: dict[str, list[str]]) -> list[str]:
    phone = body.get("phone") if isinstance(body, dict) else (query.get("phone") or [""])[0]
    if method == "POST" and (not isinstance(body, dict) or set(body) != {"phone"}):
        return ['POST /numbers/exists takes {"phone"}']
    return [] if E164.match(str(phone)) else [f"phone {phone!r} is not E.164 with +"]
