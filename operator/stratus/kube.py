"""The one module that writes to the API server: server-side apply with the `stratus` field
manager, status patches guarded by resourceVersion, deletes, and Events. Calls are synchronous
(the kubernetes client) and run in a thread pool, off the event loop."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

from kubernetes import client, config, dynamic
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic.exceptions import NotFoundError, ResourceNotFoundError

FIELD_MANAGER = "stratus"
ABSENT_RECHECK = 10.0
Obj = dict[str, Any]


class ConflictError(Exception):
    """The object changed since it was read: plan again from fresh state."""


def load_client() -> client.ApiClient:
    """In a pod, its ServiceAccount; elsewhere, KUBECONFIG or ~/.kube/config, as kubectl."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        # The client reads KUBECONFIG when imported; `--kubeconfig` may have set it since.
        config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))
    return client.ApiClient()


class Kube:
    """Writes for the controllers. One instance per operator process."""

    def __init__(self, api: client.ApiClient, threads: int = 16) -> None:
        self._dynamic = dynamic.DynamicClient(api)
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="kube")
        # (apiVersion, kind) -> when it was last found absent
        self._absent: dict[tuple[str, str], float] = {}

    async def _run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, partial(fn, *args, **kwargs))

    def _resource(self, api_version: str, kind: str) -> Any:
        return self._dynamic.resources.get(api_version=api_version, kind=kind)

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
        )

    async def patch_status(
        self,
        api_version: str,
        kind: str,
        namespace: str,
        name: str,
        resource_version: str,
        old: Obj,
        new: Obj,
    ) -> Obj:
        """Merge-patch status from `old` to `new`, only if the object is still at
        `resource_version`; raises ConflictError otherwise."""
        resource = self._resource(api_version, kind)
        patch = {k: v for k, v in new.items() if old.get(k) != v}
        patch.update({k: None for k in old if k not in new})
        body = {"metadata": {"resourceVersion": resource_version}, "status": patch}
        try:
            result = await self._run(
                resource.status.patch,
                body=body,
                name=name,
                namespace=namespace,
                content_type="application/merge-patch+json",
            )
        except ApiException as exc:
            if exc.status == 409:
                raise ConflictError(str(exc.reason)) from exc
            raise
        return dict(result.to_dict())

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
            self._resource(api_version, kind)
        except ResourceNotFoundError:
            checked = self._absent.get((api_version, kind))
            if checked is not None and time.monotonic() - checked < ABSENT_RECHECK:
                return False
            self._dynamic.resources.invalidate_cache()
            try:
                self._resource(api_version, kind)
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
        )

    async def scale(self, namespace: str, name: str, replicas: int) -> None:
        resource = self._resource("apps/v1", "Deployment")
        await self._run(
            resource.patch,
            body={"spec": {"replicas": replicas}},
            name=name,
            namespace=namespace,
            content_type="application/merge-patch+json",
        )

    async def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        resource = self._resource(api_version, kind)
        try:
            await self._run(
                resource.delete,
                name=name,
                namespace=namespace,
                body={"propagationPolicy": "Background"},
            )
        except ApiException as exc:
            if exc.status != 404:
                raise

    async def event(self, involved: Obj, type_: str, reason: str, message: str) -> None:
        """Record a Kubernetes Event about `involved` (apiVersion, kind, metadata)."""
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
        resource = self._resource("v1", "Event")
        await self._run(resource.create, body=body, namespace=meta["namespace"])
