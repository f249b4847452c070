"""What every reconciler does the same way: time itself and count its errors, write status only
when it changed and only over the version it was planned from, count resources by phase."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from stratus import metrics
from stratus.api.common import API_VERSION
from stratus.kube import ConflictError, Kube

# After a write conflict (planned from a stale cache), plan again this soon.
CONFLICT_RETRY = 0.2


async def timed(kind: str, work: Awaitable[float | None]) -> float | None:
    started = time.monotonic()
    try:
        return await work
    except Exception:
        metrics.RECONCILE_ERRORS.labels(kind).inc()
        raise
    finally:
        metrics.RECONCILE_SECONDS.labels(kind).observe(time.monotonic() - started)


async def write_status(
    kube: Kube, kind: str, meta: dict[str, Any], old: dict[str, Any], new: dict[str, Any]
) -> float | None:
    """Write `new` status if it differs; returns a retry delay when the object moved on."""
    if new == old:
        return None
    try:
        await kube.patch_status(
            API_VERSION, kind, meta["namespace"], meta["name"], meta["resourceVersion"], old, new
        )
    except ConflictError:
        return CONFLICT_RETRY
    return None


def count_phases(keys: Iterable[Any], lookup: Callable[[Any], Iterable[Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for key in list(keys):
        for obj in lookup(key):
            phase = (obj.get("status") or {}).get("phase") or "Pending"
            counts[phase] = counts.get(phase, 0) + 1
    return counts
