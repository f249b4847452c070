"""What the status alone cannot show: it holds only the latest analysis, validation figures and
weights, so every version a watch delivers adds a sample here. Bounded per resource."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

Obj = Mapping[str, Any]
Key = tuple[str, str, str]  # kind, namespace, name
MAX_SAMPLES = 500


def _series() -> deque[dict[str, Any]]:
    return deque(maxlen=MAX_SAMPLES)


@dataclass
class Samples:
    weights: deque[dict[str, Any]] = field(default_factory=_series)
    analysis: deque[dict[str, Any]] = field(default_factory=_series)
    validation: deque[dict[str, Any]] = field(default_factory=_series)
    checkpoints: deque[dict[str, Any]] = field(default_factory=_series)


def observe(samples: Samples, obj: Obj, now: float) -> bool:
    """Add what is new in this version of the object; True when something was."""
    status = obj.get("status") or {}
    added = False
    if obj["kind"] == "TrainingJob":
        last = status.get("lastCheckpoint") or {}
        if last.get("path") and (not samples.checkpoints or samples.checkpoints[-1] != last):
            samples.checkpoints.append(dict(last))
            added = True
        return added
    weight = {
        "time": now,
        "revision": status.get("canaryRevision"),
        "configured": status.get("canaryWeight") or 0,
        "achieved": status.get("canaryWeightAchieved") or 0,
    }
    previous = samples.weights[-1] if samples.weights else None
    if previous is None or {**previous, "time": now} != weight:
        samples.weights.append(weight)
        added = True
    analysis = status.get("lastAnalysis") or {}
    fresh = not samples.analysis or samples.analysis[-1]["at"] != analysis.get("time")
    if analysis.get("time") and analysis.get("results") and fresh:
        samples.analysis.append({"at": analysis["time"], "results": list(analysis["results"])})
        added = True
    validation = status.get("validation") or {}
    results = validation.get("results") or []
    if results:
        entry = {"revision": validation.get("revision"), "results": list(results)}
        last_entry = samples.validation[-1] if samples.validation else None
        if last_entry is None or {k: last_entry[k] for k in entry} != entry:
            samples.validation.append({"time": now, **entry})
            added = True
    return added


class History:
    """Samples of every resource the watches deliver, shared by the server's threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._samples: dict[Key, Samples] = {}

    def observe(self, obj: Obj, now: float) -> bool:
        meta = obj["metadata"]
        key = (obj["kind"], meta["namespace"], meta["name"])
        with self._lock:
            return observe(self._samples.setdefault(key, Samples()), obj, now)

    def forget(self, key: Key) -> None:
        with self._lock:
            self._samples.pop(key, None)

    def get(self, key: Key) -> dict[str, list[dict[str, Any]]]:
        with self._lock:
            found = self._samples.get(key) or Samples()
            return {
                "weights": list(found.weights),
                "analysis": list(found.analysis),
                "validation": list(found.validation),
                "checkpoints": list(found.checkpoints),
            }
