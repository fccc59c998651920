"""django-q entry points for monitoring: thin, safe to run twice."""

from monitoring.checks import daily_rollover_run, health_check_run


def health_check() -> dict:
    return health_check_run()


def daily_rollover() -> bool:
    return daily_rollover_run()
