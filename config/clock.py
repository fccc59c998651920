"""The one clock. Everything that needs the time asks `now()`; tests move it.

`sleep()` goes through here too, so that a simulated run can advance the clock
instead of waiting.
"""

import time
from datetime import UTC, datetime


def now() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


def sleep(seconds: float) -> None:
    if seconds > 0:
        time.sleep(seconds)
