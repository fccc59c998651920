"""django-q entry points for webhook events: take ids, call processing, nothing else.

Every task is safe to run twice (django-q2 delivers at least once): an event is only
processed while it is `received`, under a row lock.
"""

from webhooks.models import WebhookEvent
from webhooks.processing import event_process, events_release, events_sweep, windows_expire


def process_event(event: int | str) -> str:
    """`event`: the event's id, or its dedup key (what the webhook enqueues: the key is
    known before the row is written, the id is not)."""
    if isinstance(event, str):
        event = WebhookEvent.objects.filter(dedup_key=event).values_list("pk", flat=True).first()
    return event_process(event_id=event) if event is not None else "no such event"


def release_waiting(message_id: int) -> int:
    """Process the events that waited for this message's outcome (reconciliation settled it)."""
    return events_release(message_ids=[message_id])


def sweep() -> dict:
    return events_sweep()


def expire_windows() -> int:
    return windows_expire()
