"""What metering reads of a pod, pure: when its containers ran, its GPUs, and whether it runs on
spot capacity. Only the pod itself is read (the operator may not read nodes), so capacity is
what the pod's placement requires: spot when its required node affinity or nodeSelector asks
for the spot label's value, on-demand otherwise."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stratus.conditions import parse_time
from stratus.cost.prices import ON_DEMAND, SPOT

Obj = Mapping[str, Any]
GPU = "nvidia.com/gpu"


@dataclass(frozen=True)
class MeteredPod:
    uid: str
    name: str
    gpus: int
    capacity: str
    # When its containers started running, and when the last stopped (None: still running).
    started: dt.datetime
    finished: dt.datetime | None = None

    def seconds(self, since: dt.datetime | None, until: dt.datetime) -> float:
        """GPU-seconds between `since` (None: its start) and `until`."""
        start = max(self.started, since) if since else self.started
        end = min(self.finished, until) if self.finished else until
        return max(0.0, (end - start).total_seconds()) * self.gpus


def _gpus(spec: Obj) -> int:
    total = 0
    for container in spec.get("containers") or []:
        resources = container.get("resources") or {}
        value = (resources.get("limits") or {}).get(GPU) or (resources.get("requests") or {}).get(
            GPU
        )
        try:
            total += int(value or 0)
        except (TypeError, ValueError):
            continue
    return total


def _on_spot(spec: Obj, label: str, spot_value: str) -> bool:
    if (spec.get("nodeSelector") or {}).get(label) == spot_value:
        return True
    required = (
        ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
            "requiredDuringSchedulingIgnoredDuringExecution"
        )
        or {}
    ).get("nodeSelectorTerms") or []
    # Terms are OR-ed: on spot for sure only when every term requires it.
    return bool(required) and all(
        any(
            e.get("key") == label and e.get("operator") == "In" and e.get("values") == [spot_value]
            for e in term.get("matchExpressions") or []
        )
        for term in required
    )


def metered_pod(pod: Obj, label: str, spot_value: str) -> MeteredPod | None:
    """The pod as metering sees it; None while it has no GPU or its containers never ran."""
    spec = pod.get("spec") or {}
    gpus = _gpus(spec)
    states = [
        c.get("state") or {} for c in (pod.get("status") or {}).get("containerStatuses") or []
    ]
    started = [
        at
        for state in states
        if (
            at := parse_time(
                (state.get("running") or state.get("terminated") or {}).get("startedAt")
            )
        )
    ]
    if gpus <= 0 or not started:
        return None
    stopped = [
        at for s in states if (at := parse_time((s.get("terminated") or {}).get("finishedAt")))
    ]
    meta = pod.get("metadata") or {}
    return MeteredPod(
        uid=str(meta.get("uid") or meta.get("name") or ""),
        name=str(meta.get("name") or ""),
        gpus=gpus,
        capacity=SPOT if _on_spot(spec, label, spot_value) else ON_DEMAND,
        started=min(started),
        finished=max(stopped) if len(stopped) == len(states) else None,
    )
