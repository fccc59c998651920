"""django-q entry points: take ids, call behaviour, nothing else.

Every task is safe to run twice (django-q2 delivers at least once). Sending is not a task:
the sender loops run in their own processes (messaging/loop.py, manage.py run_senders).
"""

from datetime import timedelta

from django_q.models import Task

from config import clock
from messaging.dispatch import dispatch_run
from messaging.sending import leases_release_expired

TASK_RESULTS_KEPT = timedelta(days=7)


def dispatch() -> dict:
    return dispatch_run()


def cleanup() -> dict:
    """Expired leases, and failed-task rows past a week (successes are never stored)."""
    cutoff = clock.now() - TASK_RESULTS_KEPT
    deleted, _ = Task.objects.filter(stopped__lt=cutoff).delete()
    return {"leases_released": leases_release_expired(), "task_results_deleted": deleted}
