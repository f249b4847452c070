"""A `Source` held in memory: the dashboard's unit tests and its benchmark serve from it, so
neither needs a cluster. It lists, watches (from a resource version), patches and records
Events the way the API server does, and can refuse what a test names (as RBAC would)."""

from __future__ import annotations

import copy
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from stratus.api.common import API_VERSION
from stratus.dashboard.source import Expired, Obj, SourceError, event_body
from stratus.training.labels import TRAININGJOB_LABEL


class MemorySource:
    def __init__(self, user: str = "tester") -> None:
        self._lock = threading.Condition()
        self._objects: dict[tuple[str, str, str], Obj] = {}
        self._events: list[Obj] = []
        self._pods: list[Obj] = []
        # (resource version, kind, change, object): what watches replay.
        self._log: list[tuple[int, str, str, Obj]] = []
        self._version = 0
        self._oldest = 0  # versions before it are expired
        self._user = user
        # Method names refused with 403, as a user without that permission would be.
        self.denied: set[str] = set()
        self.calls: list[tuple[str, Any]] = []

    # -- what tests set up -------------------------------------------------------------------
    def put(self, obj: Obj) -> Obj:
        """Create or replace a Stratus resource (or any object, for its Events)."""
        obj = copy.deepcopy(obj)
        obj.setdefault("apiVersion", API_VERSION)
        meta = obj["metadata"]
        meta.setdefault("namespace", "default")
        key = (obj["kind"], meta["namespace"], meta["name"])
        with self._lock:
            previous = self._objects.get(key)
            meta.setdefault("uid", previous["metadata"]["uid"] if previous else str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", _now())
            change = "MODIFIED" if previous else "ADDED"
            self._record(obj["kind"], change, obj)
            self._objects[key] = obj
        return copy.deepcopy(obj)

    def delete(self, kind: str, namespace: str, name: str) -> None:
        with self._lock:
            obj = self._objects.pop((kind, namespace, name))
            self._record(kind, "DELETED", obj)

    def add_event(self, event: Obj) -> None:
        with self._lock:
            event = copy.deepcopy(event)
            event.setdefault("metadata", {}).setdefault("name", f"e{uuid.uuid4().hex[:10]}")
            self._events.append(event)
            if (event.get("involvedObject") or {}).get("apiVersion") == API_VERSION:
                self._record("Event", "ADDED", event)

    def add_pod(self, pod: Obj) -> None:
        with self._lock:
            self._pods.append(copy.deepcopy(pod))

    def expire(self) -> None:
        """Every version so far becomes too old to watch from (as etcd's compaction does)."""
        with self._lock:
            self._oldest = self._version + 1
            self._lock.notify_all()

    def _record(self, kind: str, change: str, obj: Obj) -> None:
        self._version += 1
        obj["metadata"]["resourceVersion"] = str(self._version)
        self._log.append((self._version, kind, change, copy.deepcopy(obj)))
        self._lock.notify_all()

    def _check(self, method: str, argument: Any = None) -> None:
        self.calls.append((method, argument))
        if method in self.denied:
            raise SourceError(403, f"{method} is forbidden for {self._user}")

    # -- the Source protocol -----------------------------------------------------------------
    def list_objects(self, kind: str, namespace: str | None) -> tuple[list[Obj], str]:
        self._check("list", kind)
        with self._lock:
            if kind == "Event":
                found = [e for e in self._events if _in(e, namespace)]
            else:
                found = [
                    o
                    for (k, ns, _), o in self._objects.items()
                    if k == kind and namespace in (None, ns)
                ]
            return copy.deepcopy(found), str(self._version)

    def watch(
        self, kind: str, namespace: str | None, resource_version: str, timeout: int
    ) -> Iterator[tuple[str, Obj]]:
        self._check("watch", kind)
        since = int(resource_version or 0)
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if since + 1 < self._oldest:
                    raise Expired()
                found = [
                    (v, change, obj)
                    for v, k, change, obj in self._log
                    if v > since and k == kind and _in(obj, namespace)
                ]
                if not found:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return
                    self._lock.wait(min(left, 0.5))
                    continue
            for version, change, obj in found:
                since = version
                yield change, copy.deepcopy(obj)

    def get(self, kind: str, namespace: str, name: str) -> Obj | None:
        self._check("get", name)
        with self._lock:
            found = self._objects.get((kind, namespace, name))
            return copy.deepcopy(found) if found else None

    def events(self, namespace: str, uid: str) -> list[Obj]:
        self._check("events", uid)
        with self._lock:
            return copy.deepcopy(
                [e for e in self._events if (e.get("involvedObject") or {}).get("uid") == uid]
            )

    def pods(self, namespace: str, trainingjob: str) -> tuple[list[Obj], list[Obj]]:
        self._check("pods", trainingjob)
        with self._lock:
            pods = [
                p
                for p in self._pods
                if p["metadata"].get("namespace", namespace) == namespace
                and (p["metadata"].get("labels") or {}).get(TRAININGJOB_LABEL) == trainingjob
            ]
            scheduled = [
                e
                for e in self._events
                if (e.get("involvedObject") or {}).get("kind") == "Pod"
                and e.get("reason") == "Scheduled"
                and str(e["involvedObject"].get("name", "")).startswith(f"{trainingjob}-")
            ]
            return copy.deepcopy(pods), copy.deepcopy(scheduled)

    def annotate(self, kind: str, namespace: str, name: str, annotations: Mapping[str, str]) -> Obj:
        self._check("annotate", (kind, namespace, name, dict(annotations)))
        with self._lock:
            obj = self._objects.get((kind, namespace, name))
            if obj is None:
                raise SourceError(404, f'{kind.lower()}s "{name}" not found')
            obj["metadata"].setdefault("annotations", {}).update(annotations)
            self._record(kind, "MODIFIED", obj)
            return copy.deepcopy(obj)

    def record_event(self, obj: Mapping[str, Any], reason: str, message: str) -> None:
        self._check("record_event", reason)
        self.add_event(event_body(obj, reason, message))

    def user(self) -> str:
        return self._user


def _in(obj: Obj, namespace: str | None) -> bool:
    return namespace is None or obj["metadata"].get("namespace") == namespace


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
