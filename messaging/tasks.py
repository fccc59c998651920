"""django-q entry points: take ids, call behaviour, nothing else.

Every task is safe to run twice (django-q2 delivers at least once).
"""

from datetime import timedelta

from django_q.models import Task

from config import clock
from messaging.dispatch import dispatch_run, sender_enqueue
from messaging.sending import SenderExit, leases_release_expired, sender_run

TASK_RESULTS_KEPT = timedelta(days=7)


def send_for_device(device_id: int) -> str:
    exit_reason = sender_run(device_id=device_id)
    if exit_reason == SenderExit.BATCH_DONE:
        sender_enqueue(device_id)
    return exit_reason


def dispatch() -> dict:
    return dispatch_run()


def cleanup() -> dict:
    """Expired leases, and failed-task rows past a week (successes are never stored)."""
    cutoff = clock.now() - TASK_RESULTS_KEPT
    deleted, _ = Task.objects.filter(stopped__lt=cutoff).delete()
    return {"leases_released": leases_release_expired(), "task_results_deleted": deleted}
