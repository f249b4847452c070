"""What every reconciler does the same way: time itself and count its errors, write status only
when it changed and only over the version it was planned from, count resources by phase."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from stratus import metrics
from stratus.api.common import API_VERSION
from stratus.conditions import Event
from stratus.kube import ConflictError, Kube, NamespaceTerminating

log = logging.getLogger(__name__)

# After a write conflict (planned from a stale cache), plan again this soon.
CONFLICT_RETRY = 0.2
# While the cache has not yet seen our own last status write, look again this late.
STALE_RETRY = 2.0


async def timed(kind: str, work: Awaitable[float | None]) -> float | None:
    started = time.monotonic()
    try:
        return await work
    except NamespaceTerminating as exc:
        # Not an error: its deletion reaches the resource next, and nothing is retried.
        log.debug("%s: %s", kind, exc)
        return None
    except Exception:
        metrics.RECONCILE_ERRORS.labels(kind).inc()
        raise
    finally:
        metrics.RECONCILE_SECONDS.labels(kind).observe(time.monotonic() - started)


class StatusWriter:
    """Writes status only when it changed, only over the version it was planned from, and
    remembers what it wrote: until the cache shows that write, a reconcile would plan from a
    status already replaced and spend a request on a certain conflict."""

    def __init__(self, kube: Kube, kind: str) -> None:
        self._kube = kube
        self._kind = kind
        # key -> the resourceVersion our last write replaced
        self._replaced: dict[Any, str] = {}
        # key -> when our last write went out
        self._written: dict[Any, float] = {}

    def forget(self, key: Any) -> None:
        self._replaced.pop(key, None)
        self._written.pop(key, None)

    def hold(self, key: Any, interval: float) -> float | None:
        """Seconds until `interval` has passed since our last write for `key`, if it has not:
        progress reported that soon after the last write can wait to be merged with the next."""
        written = self._written.get(key)
        if written is None:
            return None
        left = written + interval - time.monotonic()
        return left if left > 0 else None

    def stale(self, key: Any, meta: dict[str, Any]) -> bool:
        """True while the cache still holds the version our last write replaced (the watch
        event of that write will reconcile again)."""
        replaced = self._replaced.get(key)
        if replaced is None:
            return False
        if replaced == meta["resourceVersion"]:
            return True
        del self._replaced[key]
        return False

    async def write(
        self, key: Any, meta: dict[str, Any], old: dict[str, Any], new: dict[str, Any]
    ) -> float | None:
        """Write `new` status if it differs; returns a retry delay if the object moved on."""
        if new == old:
            return None
        try:
            version = await self._kube.patch_status(
                API_VERSION,
                self._kind,
                meta.get("namespace", ""),
                meta["name"],
                meta["resourceVersion"],
                old,
                new,
            )
        except ConflictError:
            return CONFLICT_RETRY
        if version == meta["resourceVersion"]:
            # Nothing changed (the API server defaulted back what the patch removed): no watch
            # event follows, so there is nothing to wait for.
            return None
        self._replaced[key] = meta["resourceVersion"]
        self._written[key] = time.monotonic()
        return None


def record(kube: Kube, obj: dict[str, Any], events: Iterable[Event]) -> None:
    """Post each Event about `obj` and log it too: people read one or the other."""
    meta = obj["metadata"]
    for event in events:
        kube.event(obj, event.type, event.reason, event.message)
        log.info(
            "%s %s/%s: %s: %s",
            obj["kind"],
            meta.get("namespace", ""),
            meta["name"],
            event.reason,
            event.message,
        )


def live(found: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    """The cached object, unless it is gone or being deleted (owner references then let the
    garbage collector remove its children)."""
    for obj in found:
        return None if obj["metadata"].get("deletionTimestamp") else obj
    return None


def cached(keys: Iterable[Any], lookup: Callable[[Any], Iterable[Any]]) -> list[Any]:
    """Every object a cache holds under its keys (listed first: the cache may change while
    this runs, off the event loop, for a scrape)."""
    return [obj for key in list(keys) for obj in lookup(key)]


def count_phases(keys: Iterable[Any], lookup: Callable[[Any], Iterable[Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for obj in cached(keys, lookup):
        phase = (obj.get("status") or {}).get("phase") or "Pending"
        counts[phase] = counts.get(phase, 0) + 1
    return counts
