"""Idle reclamation's judgement: the Prometheus queries that read an InferenceService's
signals, and whether their answers say idle. Every signal given must say idle; a signal with
no data, or that could not be read, is never idle (a service is not scaled down on a guess)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from stratus.api.schedule import Idle

REQUESTS = "requests"
GPU_UTILIZATION = "gpuUtilization"
# NVIDIA's DCGM exporter: GPU utilisation in percent, labelled with the pod using the GPU (its
# Kubernetes mode's `namespace` and `pod` labels).
DCGM_GPU_UTIL = "DCGM_FI_DEV_GPU_UTIL"
# Over the time between two readings, so that a burst between them is not missed.
GPU_WINDOW = "1m"
# A pod of a revision's Deployment: <deployment>-<ReplicaSet hash>-<suffix>.
POD_SUFFIX = "-[a-z0-9]+-[a-z0-9]+"
_SAFE = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


@dataclass(frozen=True)
class Reading:
    """One signal's answer: every series' value, or None and why it could not be read."""

    signal: str
    values: tuple[float, ...] | None
    error: str = ""


@dataclass(frozen=True)
class Verdict:
    idle: bool
    message: str


def gpu_query(namespace: str, deployments: Iterable[str]) -> str | None:
    """The busiest GPU of the revisions' pods over GPU_WINDOW; None without a Deployment (no
    pods to read). Names are DNS labels, so they go into the regex as they are."""
    names = sorted(d for d in deployments if _SAFE.match(d))
    if not names or not _SAFE.match(namespace):
        return None
    pods = f"({'|'.join(names)}){POD_SUFFIX}"
    return (
        f'max(max_over_time({DCGM_GPU_UTIL}{{namespace="{namespace}",pod=~"{pods}"}}'
        f"[{GPU_WINDOW}]))"
    )


def queries(idle: Idle, namespace: str, deployments: Iterable[str]) -> dict[str, str | None]:
    """Each signal the spec gives, and its query (None: nothing to ask, so not idle). The
    requests query's {{name}} and {{namespace}} are replaced by the caller."""
    asked: dict[str, str | None] = {}
    if idle.requests_query is not None:
        asked[REQUESTS] = idle.requests_query
    if idle.gpu_utilization_below is not None:
        asked[GPU_UTILIZATION] = gpu_query(namespace, deployments)
    return asked


def judge(idle: Idle, readings: Iterable[Reading]) -> Verdict:
    """Idle when every signal the spec gives was read and says idle."""
    said = {r.signal: r for r in readings}
    parts: list[str] = []
    idle_now = True
    for signal in queries(idle, "", ()):
        reading = said.get(signal)
        if reading is None or reading.values is None:
            why = reading.error if reading and reading.error else "not read"
            parts.append(f"{signal}: unknown ({why})")
            idle_now = False
        elif not reading.values:
            parts.append(f"{signal}: no data")
            idle_now = False
        elif signal == REQUESTS:
            top = max(reading.values)
            idle_now = idle_now and top <= 0
            parts.append(f"requests {top:g}/s")
        else:
            top = max(reading.values)
            below = idle.gpu_utilization_below or 0
            idle_now = idle_now and top < below
            parts.append(f"GPU utilisation {top:g}% (idle below {below}%)")
    return Verdict(idle_now, "; ".join(parts))
