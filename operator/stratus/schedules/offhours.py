"""An InferenceService's off-hours: held at its floor from each window's start until warmUp
before its end, when it is scaled back up so that it is ready as on-hours begin."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from stratus.api.common import duration_seconds
from stratus.api.schedule import ServingSchedule
from stratus.schedules import windows


@dataclass(frozen=True)
class OffHours:
    # Inside an off-hours window (the warm-up included).
    off_hours: bool
    # Held at the floor: off-hours, and not yet warming up.
    held: bool
    # When `held` next flips: the next hold, or the warm-up; None when it never does.
    next_change: dt.datetime | None
    # When the current off-hours end (None outside them, or when they never end).
    ends: dt.datetime | None


def off_hours(schedule: ServingSchedule, now: dt.datetime) -> OffHours:
    raw = windows.occurrences(schedule.off_hours, schedule.time_zone, now)
    warm_up = dt.timedelta(seconds=duration_seconds(schedule.warm_up) or 0.0)
    window = windows.state(raw, now)
    hold = windows.state(windows.shortened(raw, warm_up), now)
    return OffHours(window.inside, hold.inside, hold.next_change, window.ends)
