"""Status helpers both controllers share: timestamps, Kubernetes-style conditions, Events."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

Status = dict[str, Any]


@dataclass(frozen=True)
class Event:
    type: str
    reason: str
    message: str


# A message quoted from Kubernetes (an Event, a child's condition), as a condition shows it.
MAX_QUOTED = 1024


def one_line(text: str, limit: int = MAX_QUOTED) -> str:
    """`text` on one line, its whitespace runs made single spaces, at most `limit` characters."""
    return " ".join(text.split())[:limit]


def timestamp(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def precise_timestamp(at: dt.datetime) -> str:
    """Milliseconds kept: for times the operator computes holds from (pauses, intervals)."""
    return at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def set_condition(
    status: Status,
    kind: str,
    state: bool,
    reason: str,
    message: str,
    now: dt.datetime,
    generation: int,
) -> None:
    """Set one condition, keeping lastTransitionTime unless its status flips."""
    conditions: list[dict[str, Any]] = status.setdefault("conditions", [])
    value = "True" if state else "False"
    previous = next((c for c in conditions if c["type"] == kind), None)
    since = previous["lastTransitionTime"] if previous and previous["status"] == value else None
    entry = {
        "type": kind,
        "status": value,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since or timestamp(now),
        "observedGeneration": generation,
    }
    status["conditions"] = [c for c in conditions if c["type"] != kind] + [entry]
    status["conditions"].sort(key=lambda c: c["type"])
