"""The operator's clock. Off-hours windows and budget windows are decided against it, so tests
move it forward (to a night, to next month) without waiting: STRATUS_CLOCK_OFFSET_FILE names a
file holding seconds to add to the real time. The admin's setting only (the operator's own
environment), never tenant input; unset, it is the real UTC time."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

OFFSET_FILE = "STRATUS_CLOCK_OFFSET_FILE"


def offset_seconds(path: str | None) -> float:
    """The offset the file holds; 0 when unset, missing or not a number (a clock never stops
    the operator)."""
    if not path:
        return 0.0
    try:
        return float(Path(path).read_text().strip() or 0)
    except (OSError, ValueError):
        return 0.0


def real_now() -> dt.datetime:
    """The real UTC time, never moved: what metering compares with pods' start and end times."""
    return dt.datetime.now(dt.UTC)


def now() -> dt.datetime:
    """The current UTC time, moved by the offset file when one is set."""
    return real_now() + dt.timedelta(seconds=offset_seconds(os.environ.get(OFFSET_FILE)))
