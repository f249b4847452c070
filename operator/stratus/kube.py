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


class ConflictError(Exception):
    """The object changed since it was read: plan again from fresh state."""


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
        # (apiVersion, kind) -> when it was last found absent
        self._absent: dict[tuple[str, str], float] = {}

    async def _run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Runs a client call in the pool, with a timeout."""
        loop = asyncio.get_running_loop()
        call = partial(fn, *args, _request_timeout=REQUEST_TIMEOUT, **kwargs)
        return await loop.run_in_executor(self._pool, call)

    def _resource(self, api_version: str, kind: str) -> Any:
        # The client's discovery search is slow enough to show under load; kinds do not move.
        found = self._resources.get((api_version, kind))
        if found is None:
            found = self._dynamic.resources.get(api_version=api_version, kind=kind)
            self._resources[(api_version, kind)] = found
        return found

    async def apply(self, manifest: Obj) -> None:
        """Create or update `manifest` by server-side apply; idempotent by construction."""
        resource = self._resource(manifest["apiVersion"], manifest["kind"])
        await self._run(
            self._dynamic.server_side_apply,
            resource,
            body=manifest,
            namespace=manifest["metadata"].get("namespace"),
            field_manager=FIELD_MANAGER,
            force_conflicts=True,
            serializer=_unused,
        )

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
    ) -> None:
        """Merge-patch status from `old` to `new`, only if the object is still at
        `resource_version`; raises ConflictError otherwise."""
        resource = self._resource(api_version, kind)
        patch = {k: v for k, v in new.items() if old.get(k) != v}
        patch.update({k: None for k in old if k not in new})
        body = {"metadata": {"resourceVersion": resource_version}, "status": patch}
        try:
            await self._run(
                resource.status.patch,
                body=body,
                name=name,
                namespace=namespace,
                content_type="application/merge-patch+json",
                serializer=_unused,
            )
        except ApiException as exc:
            if exc.status == 409:
                raise ConflictError(str(exc.reason)) from exc
            raise

    async def get(self, api_version: str, kind: str, namespace: str, name: str) -> Obj | None:
        """The object, or None when it (or its kind) does not exist."""
        try:
            resource = self._resource(api_version, kind)
            found = await self._run(resource.get, name=name, namespace=namespace)
        except (ResourceNotFoundError, NotFoundError):
            return None
        return dict(found.to_dict())

    async def has_kind(self, api_version: str, kind: str) -> bool:
        """Whether the cluster serves this kind. A CRD may be installed at any time, so an
        absent kind is looked up again, but at most once per ABSENT_RECHECK seconds: a fresh
        discovery on every reconcile would cost a dozen requests each time."""
        try:
            # Past the cache of found kinds: a CRD may also be removed.
            self._dynamic.resources.get(api_version=api_version, kind=kind)
        except ResourceNotFoundError:
            checked = self._absent.get((api_version, kind))
            if checked is not None and time.monotonic() - checked < ABSENT_RECHECK:
                return False
            self._dynamic.resources.invalidate_cache()
            try:
                self._dynamic.resources.get(api_version=api_version, kind=kind)
            except ResourceNotFoundError:
                self._absent[(api_version, kind)] = time.monotonic()
                return False
        self._absent.pop((api_version, kind), None)
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
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": involved["apiVersion"],
                "kind": involved["kind"],
                "name": meta["name"],
                "namespace": meta["namespace"],
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
        if error is not None:
            log.warning("could not post an event: %s", error)
