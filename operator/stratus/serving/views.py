"""What the InferenceService controller reads of its Deployments, pods and other children
(Services, PodDisruptionBudgets, HPAs), pure."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stratus.conditions import one_line
from stratus.serving.labels import REVISION_LABEL
from stratus.storage.redact import redact

Obj = Mapping[str, Any]
# A staging failure's message, as the condition quotes it.
MAX_STAGING_MESSAGE = 1024


@dataclass(frozen=True)
class DeploymentView:
    name: str
    revision: str
    replicas: int
    ready: int
    # Whether the Deployment still points to its InferenceService.
    owned: bool = True
    # Why its ReplicaSet cannot create pods (a quota, admission, a missing PriorityClass), from
    # the Deployment's ReplicaFailure condition, in one line.
    replica_failure: str | None = None


@dataclass(frozen=True)
class StagingFailure:
    revision: str
    message: str


def deployment_view(obj: Obj) -> DeploymentView:
    status = obj.get("status") or {}
    failure = next(
        (
            c
            for c in status.get("conditions") or []
            if c.get("type") == "ReplicaFailure" and c.get("status") == "True"
        ),
        None,
    )
    return DeploymentView(
        name=obj["metadata"]["name"],
        revision=obj["metadata"].get("labels", {}).get(REVISION_LABEL, ""),
        replicas=int((obj.get("spec") or {}).get("replicas") or 0),
        ready=int(status.get("readyReplicas") or 0),
        owned=any(
            ref.get("kind") == "InferenceService" and ref.get("controller")
            for ref in obj["metadata"].get("ownerReferences") or []
        ),
        replica_failure=(
            one_line(failure.get("message") or failure.get("reason") or "ReplicaFailure")
            if failure
            else None
        ),
    )


def staging_failure(pod: Obj) -> StagingFailure | None:
    """The model-staging init container's failure, if it failed."""
    for init in (pod.get("status") or {}).get("initContainerStatuses") or []:
        state = init.get("state") or {}
        ended = state.get("terminated") or (init.get("lastState") or {}).get("terminated")
        if ended and ended.get("exitCode"):
            # Staging writes one redacted line. Anything else (an older staging image, a crash
            # before staging ran) is held to the same: its last line, as a traceback's names
            # the error; a kill leaves only its reason (OOMKilled) and code.
            lines = (ended.get("message") or "").strip().splitlines()
            message = redact(" ".join(lines[-1].split()))[:MAX_STAGING_MESSAGE] if lines else ""
            code = f"exit code {ended['exitCode']}"
            why = ended.get("reason")
            revision = pod["metadata"].get("labels", {}).get(REVISION_LABEL, "")
            return StagingFailure(
                revision, message or (f"{why}, {code}" if why and why != "Error" else code)
            )
    return None


@dataclass(frozen=True)
class RouteView:
    name: str
    rules: tuple[dict[str, Any], ...]


def route_view(obj: Obj) -> RouteView:
    rules = (obj.get("spec") or {}).get("rules") or []
    return RouteView(obj["metadata"]["name"], tuple(dict(rule) for rule in rules))


@dataclass(frozen=True)
class ChildView:
    """A Service, PodDisruptionBudget or HorizontalPodAutoscaler of an InferenceService, as
    observed: enough to tell whether what the operator would apply is already there."""

    kind: str
    name: str
    labels: Mapping[str, str]
    # The uids its owner references name.
    owners: tuple[str, ...]
    spec: Mapping[str, Any]


def child_view(obj: Obj) -> ChildView:
    """From an observed object, or from a manifest as the operator applies it."""
    meta = obj["metadata"]
    return ChildView(
        kind=str(obj.get("kind") or ""),
        name=meta["name"],
        labels=dict(meta.get("labels") or {}),
        owners=tuple(str(ref.get("uid")) for ref in meta.get("ownerReferences") or []),
        # A plain, deep copy: kopf's bodies are views of objects it goes on changing.
        spec=json.loads(json.dumps(obj.get("spec") or {})),
    )


def _contains(have: Any, want: Any) -> bool:
    """Whether `have` holds every field of `want` with its value (the API server adds its
    defaults, such as a Service port's protocol, beside what we wrote). A field the API server
    leaves out holds its zero value: it omits false, 0 and empty fields (Go's omitempty), so
    a `publishNotReadyAddresses: false` we wrote reads back as no field at all."""
    if isinstance(want, Mapping):
        return isinstance(have, Mapping) and all(
            _contains(have[k], v) if k in have else _zero(v) for k, v in want.items()
        )
    if isinstance(want, list):
        return (
            isinstance(have, list)
            and len(have) == len(want)
            and all(_contains(h, w) for h, w in zip(have, want, strict=True))
        )
    return bool(have == want)


def _zero(value: Any) -> bool:
    return value is None or (isinstance(value, bool | int | str | list | dict) and not value)


def up_to_date(manifest: Obj, view: ChildView | None) -> bool:
    """Whether the child `manifest` describes is there with every field the operator owns as
    the manifest has it: its labels, its owner reference, its spec. If so, no apply is due."""
    if view is None or view.kind != manifest["kind"]:
        return False
    meta = manifest["metadata"]
    return (
        _contains(view.labels, meta.get("labels") or {})
        and all(str(ref["uid"]) in view.owners for ref in meta.get("ownerReferences") or [])
        and _contains(view.spec, manifest.get("spec") or {})
    )
