"""django-q entry points: take ids, call behaviour, nothing else.

Every task is safe to run twice (django-q2 delivers at least once). Sending is not a task:
the sender loops run in their own processes (messaging/loop.py, manage.py run_senders).
"""

from messaging.dispatch import dispatch_run
from messaging.retention import retention_run
from messaging.sending import leases_release_expired


def dispatch() -> dict:
    return dispatch_run()


def cleanup() -> dict:
    """Expired leases; webhook events, attempts and task results past retention (messaging/retention.py)."""
    return {"leases_released": leases_release_expired(), **retention_run()}
