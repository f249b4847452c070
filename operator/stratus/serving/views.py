"""What the InferenceService controller reads of its Deployments and pods, pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stratus.serving.labels import REVISION_LABEL

Obj = Mapping[str, Any]


@dataclass(frozen=True)
class DeploymentView:
    name: str
    revision: str
    replicas: int
    ready: int
    # Whether the Deployment still points to its InferenceService.
    owned: bool = True


@dataclass(frozen=True)
class StagingFailure:
    revision: str
    message: str


def deployment_view(obj: Obj) -> DeploymentView:
    status = obj.get("status") or {}
    return DeploymentView(
        name=obj["metadata"]["name"],
        revision=obj["metadata"].get("labels", {}).get(REVISION_LABEL, ""),
        replicas=int((obj.get("spec") or {}).get("replicas") or 0),
        ready=int(status.get("readyReplicas") or 0),
        owned=any(
            ref.get("kind") == "InferenceService" and ref.get("controller")
            for ref in obj["metadata"].get("ownerReferences") or []
        ),
    )


def staging_failure(pod: Obj) -> StagingFailure | None:
    """The model-staging init container's failure, if it failed."""
    for init in (pod.get("status") or {}).get("initContainerStatuses") or []:
        state = init.get("state") or {}
        ended = state.get("terminated") or (init.get("lastState") or {}).get("terminated")
        if ended and ended.get("exitCode"):
            message = ended.get("message") or f"exit code {ended['exitCode']}"
            revision = pod["metadata"].get("labels", {}).get(REVISION_LABEL, "")
            return StagingFailure(revision, message.strip())
    return None


@dataclass(frozen=True)
class RouteView:
    name: str
    rules: tuple[dict[str, Any], ...]


def route_view(obj: Obj) -> RouteView:
    rules = (obj.get("spec") or {}).get("rules") or []
    return RouteView(obj["metadata"]["name"], tuple(dict(rule) for rule in rules))
