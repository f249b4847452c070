"""The CLI's reads and writes, with the credentials kubectl would use (--kubeconfig, else
KUBECONFIG, else ~/.kube/config) and the context's namespace unless -n names one. Objects come
back as plain dicts, as the API server writes them; every API error becomes one line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from stratus.api.common import GROUP, VERSION
from stratus.cli.render import KINDS, Kind, Obj

# No read waits on an unresponsive API server for longer than this (seconds).
REQUEST_TIMEOUT = 30


def _reason(exc: ApiException) -> str:
    try:
        message = json.loads(exc.body or "{}").get("message")
    except ValueError:
        message = None
    return str(message or exc.reason)


class Cluster:
    def __init__(self, kubeconfig: Path | None, namespace: str | None) -> None:
        path = str(kubeconfig) if kubeconfig else None
        try:
            self.api = config.new_client_from_config(config_file=path)
            _, active = config.list_kube_config_contexts(config_file=path)
        except (config.ConfigException, OSError) as exc:
            raise RuntimeError(f"no cluster to talk to: {exc}") from None
        self.namespace = (
            namespace or (active or {}).get("context", {}).get("namespace") or "default"
        )
        self.custom: Any = client.CustomObjectsApi(self.api)
        self.core: Any = client.CoreV1Api(self.api)
        self.batch: Any = client.BatchV1Api(self.api)
        self.apps: Any = client.AppsV1Api(self.api)

    def _plain(self, value: Any) -> Obj:
        plain: Obj = self.api.sanitize_for_serialization(value)
        return plain

    def get(self, kind: Kind, name: str) -> Obj:
        try:
            obj: Obj = self.custom.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, kind.plural, name, _request_timeout=REQUEST_TIMEOUT
            )
        except ApiException as exc:
            if exc.status == 404:
                raise RuntimeError(f"{kind.singular} {self.namespace}/{name} not found") from None
            raise RuntimeError(f"reading {kind.singular} {name}: {_reason(exc)}") from None
        return obj

    def list_all(self, kind: Kind, all_namespaces: bool) -> list[Obj]:
        try:
            if all_namespaces:
                found = self.custom.list_cluster_custom_object(
                    GROUP, VERSION, kind.plural, _request_timeout=REQUEST_TIMEOUT
                )
            else:
                found = self.custom.list_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, kind.plural, _request_timeout=REQUEST_TIMEOUT
                )
        except ApiException as exc:
            raise RuntimeError(f"listing {kind.plural}: {_reason(exc)}") from None
        items: list[Obj] = found.get("items") or []
        return sorted(items, key=lambda o: (o["metadata"]["namespace"], o["metadata"]["name"]))

    def find(self, name: str, kind: Kind | None) -> tuple[Kind, Obj]:
        """The resource called `name`: of `kind`, or of whichever kind has one by that name."""
        if kind is not None:
            return kind, self.get(kind, name)
        found = []
        for candidate in KINDS:
            try:
                found.append((candidate, self.get(candidate, name)))
            except RuntimeError as exc:
                if "not found" not in str(exc):
                    raise
        if not found:
            raise RuntimeError(f"no trainingjob or inferenceservice {self.namespace}/{name}")
        if len(found) > 1:
            raise RuntimeError(
                f"both a trainingjob and an inferenceservice are called {name}: "
                "name the kind (tj/NAME or infs/NAME)"
            )
        return found[0]

    def patch(self, kind: Kind, name: str, body: Obj) -> Obj:
        try:
            obj: Obj = self.custom.patch_namespaced_custom_object(
                GROUP, VERSION, self.namespace, kind.plural, name, body
            )
        except ApiException as exc:
            if exc.status == 404:
                raise RuntimeError(f"{kind.singular} {self.namespace}/{name} not found") from None
            raise RuntimeError(f"changing {kind.singular} {name}: {_reason(exc)}") from None
        return obj

    def events(self, obj: Obj) -> list[Obj]:
        meta = obj["metadata"]
        selector = (
            f"involvedObject.kind={obj['kind']},involvedObject.name={meta['name']},"
            f"involvedObject.uid={meta['uid']}"
        )
        return self._items(self.core.list_namespaced_event, "events", field_selector=selector)

    def jobs(self, selector: str) -> list[Obj]:
        return self._items(self.batch.list_namespaced_job, "jobs", label_selector=selector)

    def pods(self, selector: str) -> list[Obj]:
        return self._items(self.core.list_namespaced_pod, "pods", label_selector=selector)

    def deployments(self, selector: str) -> list[Obj]:
        return self._items(
            self.apps.list_namespaced_deployment, "deployments", label_selector=selector
        )

    def _items(self, method: Any, what: str, **selector: str) -> list[Obj]:
        try:
            found = method(self.namespace, _request_timeout=REQUEST_TIMEOUT, **selector)
        except ApiException as exc:
            raise RuntimeError(f"listing {what}: {_reason(exc)}") from None
        return [self._plain(item) for item in found.items]

    def log(self, pod: str, container: str | None, follow: bool, tail: int | None) -> Iterator[str]:
        """A container's log, line by line; with `follow`, until the container ends."""
        options: dict[str, Any] = {"container": container, "follow": follow}
        if tail is not None:
            options["tail_lines"] = tail
        try:
            response = self.core.read_namespaced_pod_log(
                pod, self.namespace, _preload_content=False, **options
            )
        except ApiException as exc:
            raise RuntimeError(f"log of pod {pod}: {_reason(exc)}") from None
        try:
            pending = b""
            for chunk in response.stream(amt=65536, decode_content=True):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    yield line.decode(errors="replace")
            if pending:
                yield pending.decode(errors="replace")
        finally:
            response.release_conn()
