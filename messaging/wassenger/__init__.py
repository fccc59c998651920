"""Wassenger, the one seam between Relance and the WhatsApp gateway.

Everything that knows Wassenger's wire lives in this package, and nothing outside it
reads a raw Wassenger field by hand:

    client.py     the HTTP calls (send, upload an attachment, look up, check a number, list devices)
    errors.py     the typed errors every failed call becomes
    payloads.py   readers of the webhook payloads Wassenger posts (event names,
                  Format A/B, ids, acks, texts, times, session states)
    sandbox/      a local stand-in for the API that also posts webhooks back
                  (`manage.py wassenger_sandbox`)

Callers use this module's names (`from messaging import wassenger`,
`wassenger.send_message(...)`, `wassenger.RateLimited`); tests fake the seam at the
HTTP boundary (tests/fake_wassenger.py) or run the sandbox.
"""

from messaging.wassenger.client import (
    DeviceState,
    NumberCheck,
    RemoteMessage,
    SendResult,
    Webhook,
    check_number,
    create_webhook,
    device_states,
    enable_webhook,
    find_message_by_reference,
    get_message,
    list_devices,
    list_webhooks,
    send_message,
    update_webhook,
    upload_file,
)
from messaging.wassenger.errors import (
    AuthError,
    DeviceRefused,
    InvalidNumber,
    OutcomeUnknown,
    RateLimited,
    Rejected,
    Transient,
    WassengerError,
)

__all__ = [
    "AuthError",
    "DeviceRefused",
    "DeviceState",
    "InvalidNumber",
    "NumberCheck",
    "OutcomeUnknown",
    "RateLimited",
    "Rejected",
    "RemoteMessage",
    "SendResult",
    "Transient",
    "WassengerError",
    "Webhook",
    "check_number",
    "create_webhook",
    "device_states",
    "enable_webhook",
    "find_message_by_reference",
    "get_message",
    "list_devices",
    "list_webhooks",
    "send_message",
    "update_webhook",
    "upload_file",
]
