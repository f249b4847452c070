"""A Budget's window: its start and end around a given time, in the Budget's time zone. Bounds
are local midnights turned into instants, so a window across a DST change is an hour shorter or
longer than its days times 24 hours, as a person on that clock expects."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass

from stratus.api.budget import BudgetWindow


@dataclass(frozen=True)
class Window:
    start: dt.datetime
    end: dt.datetime

    def seconds_left(self, now: dt.datetime) -> float:
        return max(0.0, (self.end - now).total_seconds())


def _midnight(day: dt.date, zone: zoneinfo.ZoneInfo) -> dt.datetime:
    """The instant a local day starts. Where a DST jump skips midnight (America/Santiago,
    America/Havana) the day starts when the gap ends: fold=0 reads a time in the gap with the
    offset before the jump, which lands there."""
    return dt.datetime.combine(day, dt.time(), tzinfo=zone).astimezone(dt.UTC)


def window_at(window: BudgetWindow, now: dt.datetime) -> Window:
    """The window that holds `now` (an aware datetime)."""
    zone = zoneinfo.ZoneInfo(window.time_zone)
    today = now.astimezone(zone).date()
    if window.type == "CalendarMonth":
        first = today.replace(day=1)
        after = (first + dt.timedelta(days=32)).replace(day=1)
    elif window.type == "CalendarWeek":
        first = today - dt.timedelta(days=today.weekday())
        after = first + dt.timedelta(days=7)
    else:
        days = window.days or 1
        first = today - dt.timedelta(days=days - 1)
        after = today + dt.timedelta(days=1)
    return Window(_midnight(first, zone), _midnight(after, zone))


def period_at(window: BudgetWindow, now: dt.datetime) -> Window:
    """The accounting period that holds `now`: the window itself for a calendar window, the
    current day for a rolling one, whose window is its last `days` periods."""
    if window.type != "RollingDays":
        return window_at(window, now)
    zone = zoneinfo.ZoneInfo(window.time_zone)
    today = now.astimezone(zone).date()
    return Window(_midnight(today, zone), _midnight(today + dt.timedelta(days=1), zone))
