"""The TrainingJob start-window gate: a new attempt starts only inside spec.schedule.startWindow.

Every new attempt waits for the window, the one after a preemption included: the window says
when the job may use the cluster (cheaper hours, cleaner energy), and a resumed attempt costs
the same as a first one. A running attempt is never stopped when the window closes; a job
that must not be held back after a preemption leaves startWindow out."""

from __future__ import annotations

from stratus.schedules import windows
from stratus.training import planner

OUTSIDE_START_WINDOW = "OutsideStartWindow"


def start_window(obs: planner.Observed) -> planner.Hold | None:
    """A Hold while outside the window, to be looked at again when it opens."""
    if obs.spec is None or obs.spec.schedule is None:
        return None
    window = obs.spec.schedule.start_window
    intervals = windows.occurrences([window], window.time_zone, obs.now)
    now = windows.state(intervals, obs.now)
    if now.inside:
        return None
    where = windows.describe(window, window.time_zone)
    if now.next_change is None:
        return planner.Hold(OUTSIDE_START_WINDOW, f"outside its start window {where}")
    return planner.Hold(
        OUTSIDE_START_WINDOW,
        f"outside its start window {where}; it opens at "
        f"{windows.local(now.next_change, window.time_zone)}",
        retry_after=(now.next_change - obs.now).total_seconds(),
    )
