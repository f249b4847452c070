"""The server's live view of the cluster: a cache of Stratus resources kept by list-then-watch
(one thread per kind), the history their versions add to, and the subscribers (Server-Sent
Events streams) each change is published to."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from stratus.dashboard import rows
from stratus.dashboard.history import History, Key
from stratus.dashboard.source import Expired, Obj, Source, SourceError

log = logging.getLogger(__name__)

WATCH_TIMEOUT = 300
RETRY_SECONDS = (1.0, 2.0, 5.0, 10.0)
# A subscriber this far behind is told to reload instead of being sent each change.
BACKLOG = 1000
CLOSED: dict[str, Any] = {"type": "closed"}


class Broker:
    """Fan-out of change messages to the open event streams."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queues: set[queue.Queue[dict[str, Any]]] = set()

    def subscribe(self) -> queue.Queue[dict[str, Any]]:
        found: queue.Queue[dict[str, Any]] = queue.Queue(BACKLOG)
        with self._lock:
            self._queues.add(found)
        return found

    def unsubscribe(self, found: queue.Queue[dict[str, Any]]) -> None:
        with self._lock:
            self._queues.discard(found)

    def publish(self, message: dict[str, Any]) -> None:
        with self._lock:
            targets = list(self._queues)
        for target in targets:
            try:
                target.put_nowait(message)
            except queue.Full:
                _replace_with_resync(target)

    def close(self) -> None:
        with self._lock:
            targets = list(self._queues)
        for target in targets:
            _replace_with_resync(target, CLOSED)


def _replace_with_resync(
    target: queue.Queue[dict[str, Any]], last: dict[str, Any] | None = None
) -> None:
    while True:
        try:
            target.get_nowait()
        except queue.Empty:
            break
    target.put_nowait(last or {"type": "resync"})


class Live:
    """Cache, history and broker, fed by one watch thread per kind."""

    def __init__(
        self,
        source: Source,
        namespace: str | None,
        clock: Callable[[], float] = time.time,
        watch_timeout: int = WATCH_TIMEOUT,
    ) -> None:
        self.source = source
        self.watch_timeout = watch_timeout
        self.namespace = namespace
        self.clock = clock
        self.history = History()
        self.broker = Broker()
        self._lock = threading.Lock()
        self._objects: dict[Key, Obj] = {}
        self._synced = {kind: threading.Event() for kind in rows.KINDS}
        self.errors: dict[str, str] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for kind in (*rows.KINDS, "Event"):
            thread = threading.Thread(
                target=self._run, args=(kind,), name=f"watch-{kind}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        self.broker.close()

    def wait_synced(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        return all(e.wait(max(0.0, deadline - time.monotonic())) for e in self._synced.values())

    def objects(self) -> list[Obj]:
        with self._lock:
            return list(self._objects.values())

    def get(self, kind: str, namespace: str, name: str) -> Obj | None:
        with self._lock:
            found = self._objects.get((kind, namespace, name))
        return found if found is not None else self.source.get(kind, namespace, name)

    def _run(self, kind: str) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                version = self._relist(kind)
                self.errors.pop(kind, None)
                failures = 0
                while not self._stop.is_set():
                    for change, obj in self.source.watch(
                        kind, self.namespace, version, WATCH_TIMEOUT
                    ):
                        if self._stop.is_set():
                            return
                        version = str(obj.get("metadata", {}).get("resourceVersion") or version)
                        if change != "BOOKMARK":
                            self._apply(kind, change, obj)
            except Expired:
                continue
            except SourceError as exc:
                self.errors[kind] = exc.message
                self._synced.get(kind, threading.Event()).set()
                log.warning("cannot watch %s: %s", kind, exc.message)
            except Exception as exc:  # noqa: BLE001 - a dropped connection: list and watch again
                self.errors[kind] = str(exc)[:512]
                log.warning("watch of %s ended: %s", kind, exc)
            self._stop.wait(RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)])
            failures += 1

    def _relist(self, kind: str) -> str:
        items, version = self.source.list_objects(kind, self.namespace)
        if kind == "Event":
            return version
        now = self.clock()
        fresh = {_key(o): o for o in items}
        with self._lock:
            gone = [k for k in self._objects if k[0] == kind and k not in fresh]
            for key in gone:
                del self._objects[key]
            self._objects.update(fresh)
        for key in gone:
            self.history.forget(key)
        for obj in items:
            self.history.observe(obj, now)
        self._synced[kind].set()
        self.broker.publish({"type": "resync"})
        return version

    def _apply(self, kind: str, change: str, obj: Obj) -> None:
        if kind == "Event":
            involved = obj.get("involvedObject") or {}
            self.broker.publish(
                {
                    "type": "event",
                    "kind": involved.get("kind"),
                    "namespace": involved.get("namespace"),
                    "name": involved.get("name"),
                }
            )
            return
        key = _key(obj)
        with self._lock:
            if change == "DELETED":
                self._objects.pop(key, None)
            else:
                self._objects[key] = obj
        if change == "DELETED":
            self.history.forget(key)
            self.broker.publish(
                {"type": "deleted", "kind": kind, "namespace": key[1], "name": key[2]}
            )
            return
        self.history.observe(obj, self.clock())
        self.broker.publish(
            {
                "type": "changed",
                "kind": kind,
                "namespace": key[1],
                "name": key[2],
                "row": rows.resource_row(obj),
            }
        )


def _key(obj: Obj) -> Key:
    meta = obj["metadata"]
    return (obj["kind"], meta["namespace"], meta["name"])
