"""The one module that writes to the API server: server-side apply with the `stratus` field
manager (a plain create for children that are never updated), status patches guarded by
resourceVersion, deletes, and Events. Calls are synchronous
(the kubernetes client) and run in a thread pool, off the event loop. Events go out through a
pool of their own, without the reconcile waiting for them, as client-go's recorder does."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import Any

from kubernetes import client, config, dynamic
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic.exceptions import NotFoundError, ResourceNotFoundError

from stratus import metrics

log = logging.getLogger(__name__)
FIELD_MANAGER = "stratus"
# How long whether the cluster serves a kind is believed, in seconds. A CRD may be installed or
# removed at any time: an absent kind (KEDA, installed later) is looked up again sooner.
KIND_PRESENT_TTL = 30.0
ABSENT_RECHECK = 10.0
# Threads for writes, and connections kept open for them: each connection opened beyond the
# pool would cost a TLS handshake on both sides.
WRITE_THREADS = 16
# No request waits on an unresponsive API server for longer than this (seconds).
REQUEST_TIMEOUT = 30
# Events waiting to be posted beyond this are dropped, so an API server outage cannot grow
# memory without bound (client-go's recorder drops too).
EVENT_BACKLOG = 1000
# Events per second, after a burst: during a storm of new TrainingJobs their AttemptStarted
# Events trail behind instead of competing with the Jobs for the API server (the kubelet
# limits its Events the same way).
EVENT_RATE = 20.0
EVENT_BURST = 50
Obj = dict[str, Any]


def _decoded(_client: Any, body: Any) -> Any:
    """For discovery responses: the decoded JSON as it is."""
    return body


def _version(_client: Any, body: Any) -> str | None:
    """For status writes: the resourceVersion after it, and nothing else decoded."""
    return ((body or {}).get("metadata") or {}).get("resourceVersion")


def _unused(_client: Any, _body: Any) -> None:
    """For responses to writes: read to the end, so that the connection goes back to the pool,
    but not turned into the client's objects, which costs more CPU than the request itself."""


class TokenBucket:
    """Blocks the calling thread until a token is free: `rate` per second, `burst` at once."""

    def __init__(
        self,
        rate: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._sleep = sleep
        self._at = clock()
        self._lock = threading.Lock()

    def take(self) -> None:
        with self._lock:
            now = self._clock()
            self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
            self._at = now
            self._tokens -= 1.0
            wait = -self._tokens / self._rate if self._tokens < 0 else 0.0
        if wait:
            self._sleep(wait)


Kind = tuple[str, str]


class KindCache:
    """Whether the cluster serves a kind ((apiVersion, kind)), from a lookup at most a TTL old:
    `present_ttl` for a kind found, `absent_ttl` for one absent. The lookup blocks (a discovery
    request) and runs in a thread, never on the event loop; callers that ask while it runs share
    it. A lookup that fails is not remembered: the next caller asks again."""

    def __init__(
        self,
        lookup: Callable[[str, str], bool],
        present_ttl: float = KIND_PRESENT_TTL,
        absent_ttl: float = ABSENT_RECHECK,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lookup = lookup
        self._ttl = {True: present_ttl, False: absent_ttl}
        self._clock = clock
        # kind -> (served, when the lookup that said so started)
        self._known: dict[Kind, tuple[bool, float]] = {}
        self._pending: dict[Kind, asyncio.Task[bool]] = {}

    async def served(self, api_version: str, kind: str) -> bool:
        key = (api_version, kind)
        known = self._known.get(key)
        if known is not None and self._clock() - known[1] < self._ttl[known[0]]:
            return known[0]
        task = self._pending.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._refresh(key))
            task.add_done_callback(_retrieved)
            self._pending[key] = task
        # One caller cancelled (its reconcile) does not cancel the lookup the others wait on.
        return await asyncio.shield(task)

    async def _refresh(self, key: Kind) -> bool:
        started = self._clock()
        try:
            served = await asyncio.to_thread(self._lookup, *key)
        finally:
            self._pending.pop(key, None)
        self._known[key] = (served, started)
        return served


def _retrieved(task: asyncio.Task[Any]) -> None:
    """Marks a shared lookup's failure as seen, for when every caller has gone."""
    if not task.cancelled():
        task.exception()


class ConflictError(Exception):
    """The object changed since it was read: plan again from fresh state."""


class NamespaceTerminating(Exception):
    """The namespace is being deleted: nothing new can be made in it, and the resource that
    wanted the child goes with it."""


def _namespace_going(exc: BaseException | None) -> bool:
    """A refusal because the namespace is being deleted."""
    return (
        isinstance(exc, ApiException)
        and exc.status == 403
        and "NamespaceTerminating" in str(exc.body or "")
    )


def _terminating(exc: ApiException, manifest: Obj) -> NamespaceTerminating | None:
    if _namespace_going(exc):
        return NamespaceTerminating(f"namespace {manifest['metadata'].get('namespace')} is going")
    return None


def load_client() -> client.ApiClient:
    """In a pod, its ServiceAccount; elsewhere, KUBECONFIG or ~/.kube/config, as kubectl."""
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        # The client reads KUBECONFIG when imported; `--kubeconfig` may have set it since.
        config.load_kube_config(
            config_file=os.environ.get("KUBECONFIG"), client_configuration=configuration
        )
    configuration.connection_pool_maxsize = WRITE_THREADS + 2
    return client.ApiClient(configuration)


def api_unanswered(api: client.ApiClient, timeout: float = 2.0) -> str | None:
    """None when the API server answers this client (GET /version, which every identity may
    read), else why not in one line."""
    try:
        client.VersionApi(api).get_code(_request_timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - any failure is the reason, never a crash
        return f"the API server does not answer: {type(exc).__name__}: {exc}"[:300]
    return None


def merge_patch(old: Obj, new: Obj) -> Obj:
    """The JSON merge patch (RFC 7386) from `old` to `new`: what changed, nested objects
    patched key by key, and None for every key `new` dropped, at any depth (a nested object
    sent whole would keep the keys it no longer has)."""
    patch: Obj = {}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            if nested := merge_patch(before, value):
                patch[key] = nested
        elif key not in old or before != value:
            patch[key] = value
    patch.update({key: None for key in old if key not in new})
    return patch


class Kube:
    """Writes for the controllers. One instance per operator process."""

    def __init__(self, api: client.ApiClient) -> None:
        self._dynamic = dynamic.DynamicClient(api)
        self._pool = ThreadPoolExecutor(max_workers=WRITE_THREADS, thread_name_prefix="kube")
        self._events = ThreadPoolExecutor(max_workers=2, thread_name_prefix="events")
        self._events_pending = 0
        self._event_rate = TokenBucket(EVENT_RATE, EVENT_BURST)
        self._events_lock = threading.Lock()
        self._resources: dict[tuple[str, str], Any] = {}
        # The client's discovery cache is not safe to search from two threads at once.
        self._discovery = threading.Lock()
        self._kinds = KindCache(self._served)

    async def _run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Runs a client call in the pool, with a timeout."""
        loop = asyncio.get_running_loop()
        call = partial(fn, *args, _request_timeout=REQUEST_TIMEOUT, **kwargs)
        return await loop.run_in_executor(self._pool, call)

    def _resource(self, api_version: str, kind: str) -> Any:
        # The client's discovery search is slow enough to show under load; kinds do not move.
        found = self._resources.get((api_version, kind))
        if found is None:
            with self._discovery:
                found = self._dynamic.resources.get(api_version=api_version, kind=kind)
            self._resources[(api_version, kind)] = found
        return found

    async def apply(self, manifest: Obj) -> None:
        """Create or update `manifest` by server-side apply; idempotent by construction."""
        resource = self._resource(manifest["apiVersion"], manifest["kind"])
        try:
            await self._run(
                self._dynamic.server_side_apply,
                resource,
                body=manifest,
                namespace=manifest["metadata"].get("namespace"),
                field_manager=FIELD_MANAGER,
                force_conflicts=True,
                serializer=_unused,
            )
        except ApiException as exc:
            if going := _terminating(exc, manifest):
                raise going from exc
            raise

    async def create(self, manifest: Obj) -> None:
        """Create `manifest` unless an object of its name exists. For children that are never
        updated, such as an attempt's Job: a create costs the API server a fraction of an apply,
        which computes field ownership over the whole pod template."""
        resource = self._resource(manifest["apiVersion"], manifest["kind"])
        try:
            await self._run(
                resource.create,
                body=manifest,
                namespace=manifest["metadata"].get("namespace"),
                field_manager=FIELD_MANAGER,
                serializer=_unused,
            )
        except ApiException as exc:
            if going := _terminating(exc, manifest):
                raise going from exc
            if exc.status != 409:
                raise

    async def patch_status(
        self,
        api_version: str,
        kind: str,
        namespace: str,
        name: str,
        resource_version: str,
        old: Obj,
        new: Obj,
    ) -> str:
        """Merge-patch status from `old` to `new`, only if the object is still at
        `resource_version`; raises ConflictError otherwise. The resourceVersion after it: the
        same one when the API server found nothing to change."""
        resource = self._resource(api_version, kind)
        body = {"metadata": {"resourceVersion": resource_version}, "status": merge_patch(old, new)}
        try:
            written = await self._run(
                resource.status.patch,
                body=body,
                name=name,
                namespace=namespace,
                content_type="application/merge-patch+json",
                serializer=_version,
            )
        except ApiException as exc:
            if exc.status == 409:
                raise ConflictError(str(exc.reason)) from exc
            raise
        return str(written)

    async def get(self, api_version: str, kind: str, namespace: str, name: str) -> Obj | None:
        """The object, or None when it (or its kind) does not exist."""
        try:
            resource = self._resource(api_version, kind)
            found = await self._run(resource.get, name=name, namespace=namespace)
        except (ResourceNotFoundError, NotFoundError):
            return None
        return dict(found.to_dict())

    async def list_labelled(
        self, api_version: str, kind: str, namespace: str, label_selector: str
    ) -> list[Obj]:
        """The objects of a kind in a namespace that carry these labels, read from the API
        server (not a cache)."""
        found = await self._run(
            self._resource(api_version, kind).get,
            namespace=namespace,
            label_selector=label_selector,
            serializer=_decoded,
        )
        return list(found.get("items") or []) if isinstance(found, dict) else []

    async def list_events(self, namespace: str, kind: str, name: str, uid: str) -> list[Obj]:
        """The Events about one object (by kind, name and uid), from the API server's watch
        cache (resourceVersion 0): cheap, and at most a moment old."""
        selector = f"involvedObject.kind={kind},involvedObject.name={name},involvedObject.uid={uid}"
        found = await self._run(
            self._resource("v1", "Event").get,
            namespace=namespace,
            field_selector=selector,
            resource_version="0",
            serializer=_decoded,
        )
        return list(found.get("items") or []) if isinstance(found, dict) else []

    async def has_kind(self, api_version: str, kind: str) -> bool:
        """Whether the cluster serves this kind. A CRD may be installed or removed at any time,
        so the answer is looked up again once it is KIND_PRESENT_TTL seconds old (found) or
        ABSENT_RECHECK (absent); the lookup runs in a thread, off the event loop."""
        return await self._kinds.served(api_version, kind)

    def _served(self, api_version: str, kind: str) -> bool:
        """Blocking: one discovery request, for the kind's group version only. A kind found is
        also resolved for writes, so that its first write does not search discovery on the
        event loop."""
        path = f"/apis/{api_version}" if "/" in api_version else f"/api/{api_version}"
        try:
            found = self._dynamic.request(
                "get", path, serializer=_decoded, _request_timeout=REQUEST_TIMEOUT
            )
        except NotFoundError:
            return False
        resources = found.get("resources") if isinstance(found, dict) else None
        if not any(r.get("kind") == kind for r in resources or []):
            return False
        try:
            self._resource(api_version, kind)
        except ResourceNotFoundError:
            return False  # removed just now
        return True

    async def merge_patch(
        self, api_version: str, kind: str, namespace: str, name: str, patch: Obj
    ) -> None:
        resource = self._resource(api_version, kind)
        await self._run(
            resource.patch,
            body=patch,
            name=name,
            namespace=namespace,
            content_type="application/merge-patch+json",
            serializer=_unused,
        )

    async def scale(self, namespace: str, name: str, replicas: int) -> None:
        resource = self._resource("apps/v1", "Deployment")
        await self._run(
            resource.patch,
            body={"spec": {"replicas": replicas}},
            name=name,
            namespace=namespace,
            content_type="application/merge-patch+json",
            serializer=_unused,
        )

    async def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        resource = self._resource(api_version, kind)
        try:
            await self._run(
                resource.delete,
                name=name,
                namespace=namespace,
                body={"propagationPolicy": "Background"},
                serializer=_unused,
            )
        except ApiException as exc:
            if exc.status != 404:
                raise

    def event(self, involved: Obj, type_: str, reason: str, message: str) -> None:
        """Record a Kubernetes Event about `involved` (apiVersion, kind, metadata), in the
        background: an Event is a record for people, and no reconcile waits for one."""
        meta = involved["metadata"]
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        # An Event about a cluster-scoped object (a Budget) lives in default, as client-go's.
        namespace = meta.get("namespace") or "default"
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": namespace},
            "involvedObject": {
                "apiVersion": involved["apiVersion"],
                "kind": involved["kind"],
                "name": meta["name"],
                "namespace": meta.get("namespace", ""),
                "uid": meta["uid"],
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": "stratus-operator"},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        with self._events_lock:
            if self._events_pending >= EVENT_BACKLOG:
                metrics.EVENTS_DROPPED.inc()
                log.warning("event dropped, %d already waiting: %s", EVENT_BACKLOG, reason)
                return
            self._events_pending += 1
            metrics.EVENTS_PENDING.set(self._events_pending)
        posted = self._events.submit(self._post_event, body)
        posted.add_done_callback(self._event_posted)

    def _post_event(self, body: Obj) -> None:
        self._event_rate.take()
        self._resource("v1", "Event").create(
            body=body,
            namespace=body["metadata"]["namespace"],
            _request_timeout=REQUEST_TIMEOUT,
            serializer=_unused,
        )

    def _event_posted(self, posted: Future[Any]) -> None:
        with self._events_lock:
            self._events_pending -= 1
            metrics.EVENTS_PENDING.set(self._events_pending)
        error = posted.exception()
        if _namespace_going(error):
            log.debug("an Event for a namespace being deleted was dropped")
        elif error is not None:
            log.warning("could not post an event: %s", error)
