"""django-q entry points for monitoring: thin, safe to run twice."""

from monitoring.checks import daily_rollover_run, health_check_run
from monitoring.health import VERIFY, heartbeat_beat


def health_check() -> dict:
    return health_check_run()


def daily_rollover() -> bool:
    return daily_rollover_run()


def verify_heartbeat() -> None:
    """Scheduled on the number checks' cluster only: it is alive while this runs."""
    heartbeat_beat(VERIFY)
