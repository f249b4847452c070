"""kopf wiring for InferenceServices: indexes of the resources, their Deployments and their
pods' staging failures; any change queues the owning InferenceService."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from stratus.api.common import GROUP, VERSION
from stratus.api.inferenceservice import PLURAL
from stratus.serving.controller import Key, ServingController
from stratus.serving.labels import INFERENCESERVICE_LABEL
from stratus.serving.views import DeploymentView, StagingFailure, deployment_view, staging_failure
from stratus.wiring import Wiring, snapshot, unstarted

OWNED = {INFERENCESERVICE_LABEL: kopf.PRESENT}


def _bind(controller: ServingController, indexes: Mapping[str, Any]) -> None:
    objs, deployments, failures = (
        indexes["inferenceservice_objects"],
        indexes["inferenceservice_deployments"],
        indexes["inferenceservice_staging_failures"],
    )
    controller.services = lambda k: objs.get(k, ())
    controller.deployments = lambda k: deployments.get(k, ())
    controller.failures = lambda k: failures.get(k, ())
    controller.keys = lambda: list(objs.keys())


WIRING: Wiring[ServingController] = Wiring(_bind)


@kopf.index(GROUP, VERSION, PLURAL)
def inferenceservice_objects(
    body: kopf.Body, namespace: str | None, name: str, **_: Any
) -> dict[Key, dict[str, Any]]:
    return {(namespace or "", name): snapshot(body)}


@kopf.index("apps", "v1", "deployments", labels=OWNED)
def inferenceservice_deployments(
    body: kopf.Body, namespace: str | None, labels: kopf.Labels, **_: Any
) -> dict[Key, DeploymentView]:
    return {(namespace or "", labels[INFERENCESERVICE_LABEL]): deployment_view(body)}


@kopf.index("", "v1", "pods", labels=OWNED)
def inferenceservice_staging_failures(
    body: kopf.Body, namespace: str | None, labels: kopf.Labels, **_: Any
) -> dict[Key, StagingFailure]:
    failure = staging_failure(body)
    return {(namespace or "", labels[INFERENCESERVICE_LABEL]): failure} if failure else {}


@kopf.on.event(GROUP, VERSION, PLURAL)
async def inferenceservice_changed(
    namespace: str | None, name: str, body: kopf.Body, **kwargs: Any
) -> None:
    WIRING.queue((namespace or "", name), kwargs, urgent=unstarted(body))


@kopf.on.event("apps", "v1", "deployments", labels=OWNED)
async def deployment_changed(namespace: str | None, labels: kopf.Labels, **kwargs: Any) -> None:
    WIRING.queue((namespace or "", labels[INFERENCESERVICE_LABEL]), kwargs)


@kopf.on.event("", "v1", "pods", labels=OWNED)
async def serving_pod_changed(namespace: str | None, labels: kopf.Labels, **kwargs: Any) -> None:
    WIRING.queue((namespace or "", labels[INFERENCESERVICE_LABEL]), kwargs)
