"""A TrainingJob's attempts, rebuilt from its Events, its pods and the checkpoints seen, and the
geometry of their timeline. Pure: objects in, JSON-ready dicts out.

The status holds the current attempt only; the operator's Events (AttemptStarted, Resumed,
Preempted, Restarted, Succeeded, Failed, Suspended) say when each attempt began and how it ended,
so the history is read from them."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from stratus.conditions import parse_time
from stratus.dashboard import rows
from stratus.dashboard.rows import event_time
from stratus.training import planner
from stratus.training.labels import ATTEMPT_LABEL

Obj = Mapping[str, Any]

_STARTED = re.compile(r"attempt (\d+) started on (spot|on-demand) capacity")
_RESUMED = re.compile(r"attempt (\d+) resumes from (\S+)")
_PREEMPTED = re.compile(r"attempt (\d+) was preempted(?: \(pod \S+ on node ([^)\s]+)\))?")
_FAILED = re.compile(r"attempt (\d+) failed with (.+?)(?:; (?:retryable )?restart|; more than|$)")
_COMPLETED = re.compile(r"attempt (\d+) completed")
_SUSPENDED = re.compile(r"attempt (\d+) stopped: the TrainingJob is suspended")
_ASSIGNED = re.compile(r"Successfully assigned \S+ to (\S+)")
# The SDK names a checkpoint step-<step> (zero-padded); other programs often do the same.
_STEP_IN_PATH = re.compile(r"step[-_]?(\d+)/?$")

# Timeline drawing units: the page scales the SVG's viewBox to its width.
WIDTH = 1000.0
BAR_Y = 30.0
BAR_HEIGHT = 36.0
TICKS = 5


@dataclass
class Attempt:
    number: int
    capacity: str | None = None  # "spot" or "on-demand"
    start: float | None = None  # epoch seconds
    end: float | None = None
    ended: str = "Running"  # Running, Preempted, Failed, Succeeded, Suspended, Stopped
    detail: str = ""
    nodes: tuple[str, ...] = ()
    resume_path: str | None = None
    resume_step: int | None = None
    end_step: int | None = None
    checkpoint_time: float | None = None  # of the checkpoint the attempt ended with
    lost_seconds: float | None = None  # run time redone after a preemption or failure
    lost_gpu_hours: float | None = None
    downtime_seconds: float | None = None  # from its end to the next attempt's start


def step_of(path: str | None, known: Mapping[str, Obj]) -> int | None:
    """The training step a checkpoint holds: as reported, else as its name says."""
    if not path:
        return None
    step = (known.get(path) or {}).get("step")
    if isinstance(step, int):
        return step
    found = _STEP_IN_PATH.search(path)
    return int(found.group(1)) if found else None


def checkpoints_of(status: Obj, seen: Iterable[Obj] = ()) -> dict[str, Obj]:
    """Checkpoints by path: those a watch saw pass through status.lastCheckpoint, and the
    current one."""
    known = {c["path"]: c for c in seen if c.get("path")}
    last = status.get("lastCheckpoint") or {}
    if last.get("path"):
        known[last["path"]] = last
    return known


def attempts(
    obj: Obj,
    events: Iterable[Obj],
    pods: Iterable[Obj] = (),
    seen_checkpoints: Iterable[Obj] = (),
    now: float | None = None,
) -> list[Attempt]:
    """Every attempt the Events and pods show, oldest first, with how each ended and what a
    preemption cost."""
    name = obj["metadata"]["name"]
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    known = checkpoints_of(status, seen_checkpoints)
    found: dict[int, Attempt] = {}
    scheduled = re.compile(rf"^{re.escape(name)}-(\d+)-")
    for event in sorted(events, key=lambda e: event_time(e) or 0.0):
        _read(event, found, known, scheduled)
    for pod in pods:
        labels = (pod.get("metadata") or {}).get("labels") or {}
        node = (pod.get("spec") or {}).get("nodeName")
        if node and str(labels.get(ATTEMPT_LABEL, "")).isdigit():
            _add_node(_get(found, int(labels[ATTEMPT_LABEL])), node)
    current = int(status.get("attempt") or 0)
    if current and status.get("phase") in ("Pending", "Running", "Restarting"):
        _get(found, current)
    ordered = [found[n] for n in sorted(found)]
    _finish(ordered, spec, status, known, now)
    return ordered


def _get(found: dict[int, Attempt], number: int) -> Attempt:
    return found.setdefault(number, Attempt(number))


def _ends(attempt: Attempt, at: float | None, how: str, detail: str) -> None:
    attempt.end, attempt.ended, attempt.detail = at, how, detail


def _read(
    event: Obj, found: dict[int, Attempt], known: Mapping[str, Obj], scheduled: re.Pattern[str]
) -> None:
    """What one Event says about an attempt."""
    at, reason, message = event_time(event), event.get("reason"), event.get("message") or ""
    involved = event.get("involvedObject") or {}
    if involved.get("kind") == "Pod":
        pod_attempt = scheduled.match(involved.get("name") or "")
        node = _ASSIGNED.search(message)
        if reason == "Scheduled" and pod_attempt and node:
            _add_node(_get(found, int(pod_attempt.group(1))), node.group(1))
    elif reason == planner.ATTEMPT_STARTED and (m := _STARTED.search(message)):
        attempt = _get(found, int(m.group(1)))
        attempt.start, attempt.capacity = at, m.group(2)
    elif reason == planner.RESUMED and (m := _RESUMED.search(message)):
        attempt = _get(found, int(m.group(1)))
        attempt.resume_path = m.group(2)
        attempt.resume_step = step_of(m.group(2), known)
    elif reason == planner.PREEMPTED and (m := _PREEMPTED.search(message)):
        attempt = _get(found, int(m.group(1)))
        _ends(attempt, at, "Preempted", message)
        if m.group(2):
            _add_node(attempt, m.group(2))
    elif reason == planner.RESTARTED and (m := _FAILED.search(message)):
        _ends(_get(found, int(m.group(1))), at, "Failed", m.group(2))
    elif reason == planner.SUCCEEDED and (m := _COMPLETED.search(message)):
        _ends(_get(found, int(m.group(1))), at, "Succeeded", message)
    elif reason == "Suspended" and (m := _SUSPENDED.search(message)):
        _ends(_get(found, int(m.group(1))), at, "Suspended", message)
    elif reason == planner.FAILED:
        # The run's end: attempts preempted or failed past a limit name themselves; a deadline
        # names none and ends the latest.
        preempted = _PREEMPTED.search(message)
        m = preempted or _FAILED.search(message)
        number = int(m.group(1)) if m else max(found, default=0)
        if number:
            _ends(_get(found, number), at, "Preempted" if preempted else "Failed", message)


def _add_node(attempt: Attempt, node: str) -> None:
    if node not in attempt.nodes:
        attempt.nodes = (*attempt.nodes, node)


def _finish(
    ordered: list[Attempt], spec: Obj, status: Obj, known: Mapping[str, Obj], now: float | None
) -> None:
    """Steps at each end, time lost to each preemption or failure, gaps between attempts."""
    gpus = int((spec.get("resources") or {}).get("gpu") or 0) * int(spec.get("workers") or 1)
    by_time = sorted((t, c) for c in known.values() if (t := _epoch(c)) is not None)
    for index, attempt in enumerate(ordered):
        following = ordered[index + 1] if index + 1 < len(ordered) else None
        if attempt.ended == "Running" and following is not None:
            attempt.ended = "Stopped"  # ended, but its Event is gone (Events expire)
        last = attempt.end if attempt.end is not None else now
        saved = [c for t, c in by_time if last is None or t <= last]
        newest = saved[-1] if saved else None
        if newest is not None:
            attempt.end_step = step_of(newest.get("path"), known)
            attempt.checkpoint_time = _epoch(newest)
        after = attempt.checkpoint_time is not None and (
            attempt.start is None or attempt.checkpoint_time > attempt.start
        )
        if not after and following is not None and following.resume_path:
            # Saved at a time no watch saw: the next attempt says which step it was.
            attempt.end_step = following.resume_step
            attempt.checkpoint_time = _epoch(known.get(following.resume_path) or {})
        if following is not None and attempt.end is not None and following.start is not None:
            attempt.downtime_seconds = max(0.0, following.start - attempt.end)
        if attempt.ended in ("Preempted", "Failed") and attempt.end is not None:
            attempt.lost_seconds = _lost(attempt)
            if attempt.lost_seconds is not None:
                attempt.lost_gpu_hours = round(attempt.lost_seconds * gpus / 3600, 4)


def _epoch(checkpoint: Obj) -> float | None:
    at = parse_time(checkpoint.get("time"))
    return at.timestamp() if at else None


def _lost(attempt: Attempt) -> float | None:
    """Run time redone after the attempt: since its newest checkpoint; all of it when it saved
    none newer than the one it resumed from; unknown when it saved one at an unknown time."""
    assert attempt.end is not None
    if attempt.checkpoint_time is not None and (
        attempt.start is None or attempt.checkpoint_time > attempt.start
    ):
        return max(0.0, attempt.end - attempt.checkpoint_time)
    if attempt.end_step is not None and attempt.end_step != attempt.resume_step:
        return None
    return None if attempt.start is None else max(0.0, attempt.end - attempt.start)


def _ticks(t0: float, span: float) -> list[dict[str, Any]]:
    ticks = []
    for i in range(TICKS + 1):
        at = t0 + span * i / TICKS
        label = dt.datetime.fromtimestamp(at, dt.UTC).strftime("%H:%M:%S")
        ticks.append({"x": round(WIDTH * i / TICKS, 1), "label": label, "time": at})
    return ticks


def geometry(items: list[Attempt], now: float) -> dict[str, Any]:
    """Bars, lost-work spans and end marks in timeline units (x from 0 to WIDTH)."""
    starts = [a.start for a in items if a.start is not None]
    if not starts:
        return {"width": WIDTH, "bars": [], "lost": [], "marks": [], "ticks": []}
    t0 = min(starts)
    t1 = max([now if a.end is None else a.end for a in items if a.start is not None])
    span = max(t1 - t0, 1.0)

    def x(at: float) -> float:
        return round(WIDTH * (at - t0) / span, 2)

    bars, lost, marks = [], [], []
    for a in items:
        if a.start is None:
            continue
        end = now if a.end is None else a.end
        bars.append(
            {
                "attempt": a.number,
                "x": x(a.start),
                "y": BAR_Y,
                "width": max(x(end) - x(a.start), 2.0),
                "height": BAR_HEIGHT,
                "capacity": a.capacity or "unknown",
                "ended": a.ended,
                "label": f"#{a.number}" + (f" {', '.join(a.nodes)}" if a.nodes else ""),
            }
        )
        if a.lost_seconds:
            lost.append(
                {
                    "attempt": a.number,
                    "x": x(end - a.lost_seconds),
                    "y": BAR_Y,
                    "width": max(x(end) - x(end - a.lost_seconds), 1.0),
                    "height": BAR_HEIGHT,
                }
            )
        if a.end is not None:
            marks.append({"attempt": a.number, "x": x(a.end), "ended": a.ended})
    return {"width": WIDTH, "bars": bars, "lost": lost, "marks": marks, "ticks": _ticks(t0, span)}


def view(
    obj: Obj,
    events: Iterable[Obj],
    pods: Iterable[Obj],
    seen_checkpoints: Iterable[Obj],
    now: float,
) -> dict[str, Any]:
    """The TrainingJob page's model."""
    events = list(events)
    items = attempts(obj, events, pods, seen_checkpoints, now)
    meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
    return {
        "kind": "TrainingJob",
        "namespace": meta["namespace"],
        "name": meta["name"],
        "phase": status.get("phase") or "Pending",
        "message": status.get("message"),
        "team": spec.get("team"),
        "gpus": int((spec.get("resources") or {}).get("gpu") or 0) * int(spec.get("workers") or 1),
        **rows.usage(status),
        "preemptions": status.get("preemptions") or 0,
        "restarts": status.get("restarts") or 0,
        "lastCheckpoint": status.get("lastCheckpoint"),
        "conditions": status.get("conditions") or [],
        "attempts": [asdict(a) for a in items],
        "lostGpuHours": round(sum(a.lost_gpu_hours or 0.0 for a in items), 4),
        "timeline": geometry(items, now),
        "events": rows.event_rows(
            e for e in events if (e.get("involvedObject") or {}).get("kind") != "Pod"
        ),
    }
