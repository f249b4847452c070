"""An in-memory API server behind the methods the controllers call on `stratus.kube.Kube`, and
the caches a controller reads, which catch up with that server only when a test says so: a
cache that lags behind the controller's own writes is what several tests are about."""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
from dataclasses import dataclass
from typing import Any, cast

from kubernetes.client.exceptions import ApiException

from stratus.api.common import API_VERSION
from stratus.config import OperatorConfig
from stratus.kube import ConflictError, Kube
from stratus.podspec import Manifest
from stratus.serving.controller import WATCHED, ServingController
from stratus.serving.views import child_view, deployment_view
from stratus.training.controller import TrainingController
from stratus.training.views import job_view, pod_view, workload_job, workload_view

NOW = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
# (kind, namespace, name)
Ident = tuple[str, str, str]


@dataclass(frozen=True)
class Call:
    """One call a controller made: which, on what, and the manifest, status or patch it sent."""

    method: str
    kind: str
    name: str
    body: Any = None


WRITES = ("apply", "create", "patch_status", "merge_patch", "scale", "delete")


def _merge(into: dict[str, Any], patch: dict[str, Any]) -> None:
    """A JSON merge patch (RFC 7386)."""
    for key, value in patch.items():
        if value is None:
            into.pop(key, None)
        elif isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)


class FakeKube:
    """Kube's contract, kept in memory: apply and create store the object (a create of one that
    exists does nothing, as Kube.create swallows the 409), a status patch over a resourceVersion
    that moved on raises ConflictError, every write bumps the object's resourceVersion. A test
    queues failures for a method and kind with `fail`."""

    def __init__(self) -> None:
        self.objects: dict[Ident, dict[str, Any]] = {}
        self.calls: list[Call] = []
        self.events: list[tuple[str, str, str]] = []
        # (apiVersion, kind) the cluster serves, for has_kind.
        self.served: set[tuple[str, str]] = set()
        self._failures: dict[tuple[str, str], list[Exception]] = {}
        self._version = 0

    def put(self, obj: Manifest) -> dict[str, Any]:
        """Store `obj` as the API server would after a write: with a new resourceVersion."""
        self._version += 1
        stored = copy.deepcopy(obj)
        stored["metadata"]["resourceVersion"] = str(self._version)
        meta = stored["metadata"]
        self.objects[(stored["kind"], meta.get("namespace", ""), meta["name"])] = stored
        return stored

    def of(self, *kinds: str) -> list[dict[str, Any]]:
        return [o for (kind, _, _), o in self.objects.items() if kind in kinds]

    def fail(self, method: str, kind: str, error: Exception, times: int = 1) -> None:
        """The next `times` calls of `method` on `kind` raise `error`."""
        self._failures.setdefault((method, kind), []).extend([error] * times)

    def writes(self) -> list[tuple[str, str]]:
        """(method, kind) of every write but Events, in order."""
        return [(c.method, c.kind) for c in self.calls if c.method in WRITES]

    def bodies(self, method: str, kind: str | None = None) -> list[Any]:
        return [c.body for c in self.calls if c.method == method and kind in (None, c.kind)]

    def _call(self, method: str, kind: str, name: str, body: Any = None) -> None:
        self.calls.append(Call(method, kind, name, body))
        queued = self._failures.get((method, kind))
        if queued:
            raise queued.pop(0)

    def _existing(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        found = self.objects.get((kind, namespace, name))
        if found is None:
            raise ApiException(status=404, reason="Not Found")
        return found

    async def apply(self, manifest: Manifest) -> None:
        meta = manifest["metadata"]
        self._call("apply", manifest["kind"], meta["name"], manifest)
        applied = copy.deepcopy(manifest)
        before = self.objects.get((manifest["kind"], meta.get("namespace", ""), meta["name"]))
        if before is not None and "status" in before:
            applied["status"] = before["status"]
        self.put(applied)

    async def create(self, manifest: Manifest) -> None:
        meta = manifest["metadata"]
        self._call("create", manifest["kind"], meta["name"], manifest)
        if (manifest["kind"], meta.get("namespace", ""), meta["name"]) not in self.objects:
            self.put(manifest)

    async def patch_status(
        self,
        api_version: str,
        kind: str,
        namespace: str,
        name: str,
        resource_version: str,
        old: dict[str, Any],
        new: dict[str, Any],
    ) -> str:
        self._call("patch_status", kind, name, new)
        obj = self._existing(kind, namespace, name)
        if obj["metadata"]["resourceVersion"] != resource_version:
            raise ConflictError("the object has been modified")
        status = dict(obj.get("status") or {})
        status.update({k: copy.deepcopy(v) for k, v in new.items() if old.get(k) != v})
        for k in old.keys() - new.keys():
            status.pop(k, None)
        if status == (obj.get("status") or {}):
            return str(obj["metadata"]["resourceVersion"])
        return str(self.put({**obj, "status": status})["metadata"]["resourceVersion"])

    async def get(
        self, api_version: str, kind: str, namespace: str, name: str
    ) -> dict[str, Any] | None:
        found = self.objects.get((kind, namespace, name))
        return copy.deepcopy(found) if found else None

    async def has_kind(self, api_version: str, kind: str) -> bool:
        return (api_version, kind) in self.served

    async def list_labelled(
        self, api_version: str, kind: str, namespace: str, label_selector: str
    ) -> list[dict[str, Any]]:
        """The objects of that kind whose labels match `label_selector` (k=v, comma-separated)."""
        self._call("list_labelled", kind, label_selector)
        wanted = dict(term.split("=", 1) for term in label_selector.split(","))
        return [
            copy.deepcopy(o)
            for (k, ns, _), o in self.objects.items()
            if k == kind
            and ns == namespace
            and wanted.items() <= (o["metadata"].get("labels") or {}).items()
        ]

    async def list_events(
        self, namespace: str, kind: str, name: str, uid: str
    ) -> list[dict[str, Any]]:
        """The Events a test put (kind Event) about the object of that kind, name and uid."""
        self._call("list_events", "Event", name)
        about = {"kind": kind, "name": name, "uid": uid}
        return [
            copy.deepcopy(e)
            for (k, ns, _), e in self.objects.items()
            if k == "Event"
            and ns == namespace
            and {f: e["involvedObject"].get(f) for f in about} == about
        ]

    async def merge_patch(
        self, api_version: str, kind: str, namespace: str, name: str, patch: dict[str, Any]
    ) -> None:
        self._call("merge_patch", kind, name, patch)
        obj = copy.deepcopy(self._existing(kind, namespace, name))
        _merge(obj, patch)
        self.put(obj)

    async def scale(self, namespace: str, name: str, replicas: int) -> None:
        self._call("scale", "Deployment", name, replicas)
        obj = copy.deepcopy(self._existing("Deployment", namespace, name))
        obj["spec"]["replicas"] = replicas
        self.put(obj)

    async def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        self._call("delete", kind, name)
        self.objects.pop((kind, namespace, name), None)

    def event(self, involved: dict[str, Any], type_: str, reason: str, message: str) -> None:
        self.calls.append(Call("event", involved["kind"], involved["metadata"]["name"], reason))
        self.events.append((type_, reason, message))


class Cache:
    """What the operator's indexes hold: the server's objects as of the last `sync`."""

    def __init__(self, kube: FakeKube) -> None:
        self._kube = kube
        self._seen: dict[Ident, dict[str, Any]] = {}

    def sync(self, *kinds: str) -> None:
        """The watch events for these kinds (every kind if none) have arrived."""
        idents = self._seen.keys() | self._kube.objects.keys()
        for ident in [i for i in idents if not kinds or i[0] in kinds]:
            found = self._kube.objects.get(ident)
            if found is None:
                self._seen.pop(ident, None)
            else:
                self._seen[ident] = copy.deepcopy(found)

    def of(self, *kinds: str) -> list[dict[str, Any]]:
        return [o for (kind, _, _), o in self._seen.items() if kind in kinds]


def resource(kind: str, name: str, spec: Manifest) -> Manifest:
    return {
        "apiVersion": API_VERSION,
        "kind": kind,
        "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}", "generation": 1},
        "spec": spec,
    }


class World:
    """One resource on the fake API server, and the caches its controller reads."""

    kind: str
    name: str
    controller: ServingController | TrainingController

    def __init__(self, spec: Manifest) -> None:
        self.kube = FakeKube()
        self.kube.put(resource(self.kind, self.name, spec))
        self.cache = Cache(self.kube)
        self.cache.sync()

    @property
    def key(self) -> tuple[str, str]:
        return ("ns", self.name)

    @property
    def obj(self) -> dict[str, Any]:
        """The resource as the API server holds it."""
        return self.kube.objects[(self.kind, "ns", self.name)]

    def reconcile(self) -> float | None:
        """One pass; `kube.calls` holds what it did."""
        self.kube.calls.clear()
        return asyncio.run(self.controller.reconcile(self.key))

    def edit(self, change: dict[str, Any]) -> None:
        """Someone else writes the resource (a label, a spec change): its resourceVersion moves
        on at the server."""
        obj = copy.deepcopy(self.obj)
        _merge(obj, change)
        self.kube.put(obj)


class ServingWorld(World):
    kind = "InferenceService"
    name = "web"
    controller: ServingController

    def __init__(self, spec: Manifest, config: OperatorConfig | None = None) -> None:
        super().__init__(spec)
        self.controller = ServingController(
            kube=cast(Kube, self.kube),
            config=config or OperatorConfig(),
            services=lambda _key: self.cache.of(self.kind),
            deployments=lambda _key: [deployment_view(o) for o in self.cache.of("Deployment")],
            failures=lambda _key: (),
            children=lambda _key: [child_view(o) for o in self.cache.of(*WATCHED)],
            clock=lambda: NOW,
            real_clock=lambda: NOW,
        )

    def ready(self) -> None:
        """Every Deployment's pods are ready (at the server; the cache sees it on `sync`)."""
        for deployment in self.kube.of("Deployment"):
            replicas = deployment["spec"]["replicas"]
            self.kube.put({**deployment, "status": {"readyReplicas": replicas}})


class TrainingWorld(World):
    kind = "TrainingJob"
    name = "tj"
    controller: TrainingController

    def __init__(self, spec: Manifest) -> None:
        super().__init__(spec)
        self.controller = TrainingController(
            kube=cast(Kube, self.kube),
            config=OperatorConfig(),
            trainingjobs=lambda _key: self.cache.of(self.kind),
            jobs=lambda _key: [job_view(o) for o in self.cache.of("Job")],
            pods=lambda _key: [pod_view(o) for o in self.cache.of("Pod")],
            workloads=lambda key: [
                workload_view(o) for o in self.cache.of("Workload") if workload_job(o) == key[1]
            ],
            clock=lambda: NOW,
            real_clock=lambda: NOW,
        )
