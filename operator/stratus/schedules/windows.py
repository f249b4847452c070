"""Weekly windows in a time zone, as UTC intervals. Each window is laid out on the local dates
around a moment (so a change of UTC offset moves it with the wall clock), overlapping or
touching occurrences are joined, and the question is then simple interval arithmetic.

A wall-clock time that does not exist on a date (the hour skipped when clocks go forward) is
read with the offset before the change, as zoneinfo does (fold=0): 02:30 on that night is the
moment the clocks show 03:30. One that exists twice (clocks go back) is its first occurrence."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from stratus.api.schedule import DAYS, Window

Interval = tuple[dt.datetime, dt.datetime]
# How many local days either side of a moment windows are laid out on: a week and a day, so
# that every weekly window that can hold now, or open next, is among them.
HORIZON_DAYS = 8


def _clock(text: str) -> dt.time:
    hours, minutes = text.split(":")
    return dt.time(int(hours), int(minutes))


def occurrences(windows: Sequence[Window], zone: str, around: dt.datetime) -> list[Interval]:
    """Every occurrence of the windows that starts on a local date within HORIZON_DAYS of
    `around`, as UTC intervals, joined where they overlap or touch, in order."""
    tz = zoneinfo.ZoneInfo(zone)
    today = around.astimezone(tz).date()
    found: list[Interval] = []
    for offset in range(-HORIZON_DAYS, HORIZON_DAYS + 1):
        day = today + dt.timedelta(days=offset)
        for window in windows:
            if DAYS[day.weekday()] not in window.days:
                continue
            start, end = _clock(window.start), _clock(window.end)
            end_day = day + dt.timedelta(days=1) if end <= start else day
            opens = dt.datetime.combine(day, start, tzinfo=tz).astimezone(dt.UTC)
            closes = dt.datetime.combine(end_day, end, tzinfo=tz).astimezone(dt.UTC)
            if closes > opens:
                found.append((opens, closes))
    return _joined(found)


def _joined(intervals: Iterable[Interval]) -> list[Interval]:
    joined: list[Interval] = []
    for start, end in sorted(intervals):
        if joined and start <= joined[-1][1]:
            joined[-1] = (joined[-1][0], max(end, joined[-1][1]))
        else:
            joined.append((start, end))
    return joined


@dataclass(frozen=True)
class State:
    """Whether a moment is inside the windows, and when that next changes (None: not within
    the horizon, for windows that join into one without end)."""

    inside: bool
    next_change: dt.datetime | None
    # The end of the window it is inside (None outside, or when it does not end).
    ends: dt.datetime | None = None


def state(intervals: Sequence[Interval], now: dt.datetime) -> State:
    """Where `now` stands among `intervals` (joined, in order, around `now`)."""
    for start, end in intervals:
        if start <= now < end:
            # Joined into a week or more, the windows cover every hour: they never end.
            ends = None if end - now >= dt.timedelta(days=HORIZON_DAYS - 1) else end
            return State(True, ends, ends)
        if start > now:
            return State(False, start)
    return State(False, None)


def shortened(intervals: Sequence[Interval], by: dt.timedelta) -> list[Interval]:
    """Each interval ending `by` earlier; one that no longer has any length is dropped (a
    warm-up longer than the window: the service never goes down)."""
    return [(start, end - by) for start, end in intervals if end - by > start]


def describe(window: Window, zone: str) -> str:
    """A window in words: Mon,Tue 20:00-07:00 Europe/Berlin."""
    return f"{','.join(window.days)} {window.start}-{window.end} {zone}"


def local(moment: dt.datetime, zone: str) -> str:
    """A moment as the window's wall clock shows it: 2026-11-30 07:00 CET."""
    return moment.astimezone(zoneinfo.ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M %Z")
