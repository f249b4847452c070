"""Where the dashboard reads and writes: the `Source` protocol the server uses, and its one
implementation against a cluster, with the user's kubeconfig and so with their permissions.
Reads are of Stratus resources, their pods and Events; the only writes are the command
annotations and the Events that record them."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

from stratus.api.common import GROUP, VERSION
from stratus.training.labels import TRAININGJOB_LABEL

Obj = dict[str, Any]
PLURALS = {"TrainingJob": "trainingjobs", "InferenceService": "inferenceservices"}
COMPONENT = "stratus-dashboard"


class SourceError(Exception):
    """The API server refused or failed a request: its HTTP status and its one-line message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Expired(SourceError):
    """A watch's resource version is too old: list again."""

    def __init__(self, message: str = "resource version expired") -> None:
        super().__init__(410, message)


class Source(Protocol):
    def list_objects(self, kind: str, namespace: str | None) -> tuple[list[Obj], str]:
        """Objects of a kind ("Event": Events about Stratus resources), and the list's
        resource version."""

    def watch(
        self, kind: str, namespace: str | None, resource_version: str, timeout: int
    ) -> Iterator[tuple[str, Obj]]:
        """(ADDED|MODIFIED|DELETED|BOOKMARK, object) from a resource version, for at most
        `timeout` seconds; raises Expired when the version is too old."""

    def get(self, kind: str, namespace: str, name: str) -> Obj | None: ...

    def events(self, namespace: str, uid: str) -> list[Obj]:
        """Events about one object."""

    def pods(self, namespace: str, trainingjob: str) -> tuple[list[Obj], list[Obj]]:
        """A TrainingJob's pods, and its pods' Scheduled Events (which outlive the pods)."""

    def annotate(self, kind: str, namespace: str, name: str, annotations: Mapping[str, str]) -> Obj:
        """Merge-patch annotations onto a resource; the patched object."""

    def record_event(self, obj: Mapping[str, Any], reason: str, message: str) -> None: ...

    def user(self) -> str:
        """Who the credentials are, as the API server sees them when it can say."""


class KubeSource:
    """The cluster, through the kubernetes client with the user's kubeconfig."""

    def __init__(self, kubeconfig: Path | None) -> None:
        from kubernetes import client, config  # noqa: PLC0415

        self._client = client
        path = str(kubeconfig) if kubeconfig else None
        self._api = config.new_client_from_config(config_file=path)
        self._custom = client.CustomObjectsApi(self._api)
        self._core = client.CoreV1Api(self._api)
        _, current = config.list_kube_config_contexts(config_file=path)
        self._kubeconfig_user = str(((current or {}).get("context") or {}).get("user") or "")
        self._user: str | None = None

    def _call(self, method: Any, *args: Any, **kwargs: Any) -> Obj:
        """A request whose answer is read as JSON as is (the client's models are not needed)."""
        from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

        try:
            response = method(*args, _preload_content=False, **kwargs)
        except ApiException as exc:
            raise _error(exc) from None
        found: Obj = json.loads(response.data)
        return found

    def list_objects(self, kind: str, namespace: str | None) -> tuple[list[Obj], str]:
        if kind == "Event":
            selector = f"involvedObject.apiVersion={GROUP}/{VERSION}"
            if namespace:
                found = self._call(
                    self._core.list_namespaced_event, namespace, field_selector=selector
                )
            else:
                found = self._call(
                    self._core.list_event_for_all_namespaces, field_selector=selector
                )
        elif namespace:
            found = self._call(
                self._custom.list_namespaced_custom_object, GROUP, VERSION, namespace, PLURALS[kind]
            )
        else:
            found = self._call(
                self._custom.list_cluster_custom_object, GROUP, VERSION, PLURALS[kind]
            )
        items = found.get("items") or []
        for item in items:
            item.setdefault("kind", kind)
        return items, str((found.get("metadata") or {}).get("resourceVersion") or "")

    def watch(
        self, kind: str, namespace: str | None, resource_version: str, timeout: int
    ) -> Iterator[tuple[str, Obj]]:
        from kubernetes import watch  # noqa: PLC0415
        from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

        kwargs: dict[str, Any] = {
            "resource_version": resource_version,
            "timeout_seconds": timeout,
            "allow_watch_bookmarks": True,
        }
        if kind == "Event":
            kwargs["field_selector"] = f"involvedObject.apiVersion={GROUP}/{VERSION}"
            func = (
                self._core.list_namespaced_event
                if namespace
                else self._core.list_event_for_all_namespaces
            )
            args: tuple[Any, ...] = (namespace,) if namespace else ()
        elif namespace:
            func = self._custom.list_namespaced_custom_object
            args = (GROUP, VERSION, namespace, PLURALS[kind])
        else:
            func = self._custom.list_cluster_custom_object
            args = (GROUP, VERSION, PLURALS[kind])
        stream = watch.Watch()
        try:
            for event in stream.stream(func, *args, **kwargs):
                obj = event["raw_object"]
                obj.setdefault("kind", kind)
                yield event["type"], obj
        except ApiException as exc:
            raise (Expired(str(exc.reason)) if exc.status == 410 else _error(exc)) from None
        finally:
            stream.stop()

    def get(self, kind: str, namespace: str, name: str) -> Obj | None:
        try:
            return self._call(
                self._custom.get_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                PLURALS[kind],
                name,
            )
        except SourceError as exc:
            if exc.status == 404:
                return None
            raise

    def events(self, namespace: str, uid: str) -> list[Obj]:
        found = self._call(
            self._core.list_namespaced_event, namespace, field_selector=f"involvedObject.uid={uid}"
        )
        return list(found.get("items") or [])

    def pods(self, namespace: str, trainingjob: str) -> tuple[list[Obj], list[Obj]]:
        pods = self._call(
            self._core.list_namespaced_pod,
            namespace,
            label_selector=f"{TRAININGJOB_LABEL}={trainingjob}",
        )
        scheduled = self._call(
            self._core.list_namespaced_event,
            namespace,
            field_selector="involvedObject.kind=Pod,reason=Scheduled",
        )
        prefix = f"{trainingjob}-"
        mine = [
            e
            for e in scheduled.get("items") or []
            if str((e.get("involvedObject") or {}).get("name", "")).startswith(prefix)
        ]
        return list(pods.get("items") or []), mine

    def annotate(self, kind: str, namespace: str, name: str, annotations: Mapping[str, str]) -> Obj:
        return self._call(
            self._custom.patch_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            PLURALS[kind],
            name,
            {"metadata": {"annotations": dict(annotations)}},
        )

    def record_event(self, obj: Mapping[str, Any], reason: str, message: str) -> None:
        self._call(
            self._core.create_namespaced_event,
            obj["metadata"]["namespace"],
            event_body(obj, reason, message),
        )

    def user(self) -> str:
        if self._user is None:
            self._user = self._review() or self._kubeconfig_user or "unknown user"
        return self._user

    def _review(self) -> str | None:
        """The user name the API server authenticated (SelfSubjectReview, Kubernetes 1.28+)."""
        try:
            found = self._call(
                self._client.AuthenticationV1Api(self._api).create_self_subject_review,
                {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
            )
        except SourceError:
            return None
        name = ((found.get("status") or {}).get("userInfo") or {}).get("username")
        return str(name) if name else None


def event_body(obj: Mapping[str, Any], reason: str, message: str) -> Obj:
    """An Event about a Stratus resource, from the dashboard."""
    import datetime as dt  # noqa: PLC0415

    meta = obj["metadata"]
    now = dt.datetime.now(dt.UTC)
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": obj.get("apiVersion") or f"{GROUP}/{VERSION}",
            "kind": obj["kind"],
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
        },
        "type": "Normal",
        "reason": reason,
        "message": message[:1024],
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "firstTimestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "lastTimestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "count": 1,
    }


def _error(exc: Any) -> SourceError:
    try:
        message = str(json.loads(exc.body)["message"])
    except (TypeError, ValueError, KeyError):
        message = str(exc.reason)
    return SourceError(int(exc.status or 500), message[:512])
