"""kopf wiring for InferenceServices: indexes of the resources, their Deployments, their other
children (Services, PodDisruptionBudgets, HPAs) and their pods' staging failures; any change,
a child's deletion included, queues the owning InferenceService."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from stratus.api.common import GROUP, VERSION
from stratus.api.inferenceservice import PLURAL
from stratus.config import SPOT_PRESETS
from stratus.cost.pods import MeteredPod, metered_pod
from stratus.serving.controller import Key, ServingController
from stratus.serving.labels import INFERENCESERVICE_LABEL, VALIDATOR_LABEL
from stratus.serving.validator import ValidatorView, validator_view
from stratus.serving.views import (
    ChildView,
    DeploymentView,
    StagingFailure,
    child_view,
    deployment_view,
    staging_failure,
)
from stratus.wiring import Wiring, snapshot, unstarted

OWNED = {INFERENCESERVICE_LABEL: kopf.PRESENT}
VALIDATORS = {VALIDATOR_LABEL: kopf.PRESENT}


def _bind(controller: ServingController, indexes: Mapping[str, Any]) -> None:
    objs, deployments, failures = (
        indexes["inferenceservice_objects"],
        indexes["inferenceservice_deployments"],
        indexes["inferenceservice_staging_failures"],
    )
    children = [indexes[name] for name in CHILD_INDEXES]
    controller.services = lambda k: objs.get(k, ())
    controller.deployments = lambda k: deployments.get(k, ())
    controller.failures = lambda k: failures.get(k, ())
    controller.children = lambda k: [c for index in children for c in index.get(k, ())]
    validators = indexes["inferenceservice_validators"]
    controller.validators = lambda k: validators.get(k, ())
    pods = indexes["inferenceservice_gpu_pods"]
    controller.pods = lambda k: pods.get(k, ())
    controller.keys = lambda: list(objs.keys())
    controller.count = lambda: len(objs)


WIRING: Wiring[ServingController] = Wiring(_bind)
CHILD_INDEXES = (
    "inferenceservice_services",
    "inferenceservice_pdbs",
    "inferenceservice_hpas",
)


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


def _child(body: kopf.Body, namespace: str | None, labels: kopf.Labels) -> dict[Key, ChildView]:
    return {(namespace or "", labels[INFERENCESERVICE_LABEL]): child_view(body)}


@kopf.index("", "v1", "services", labels=OWNED)
def inferenceservice_services(
    body: kopf.Body, namespace: str | None, labels: kopf.Labels, **_: Any
) -> dict[Key, ChildView]:
    return _child(body, namespace, labels)


@kopf.index("policy", "v1", "poddisruptionbudgets", labels=OWNED)
def inferenceservice_pdbs(
    body: kopf.Body, namespace: str | None, labels: kopf.Labels, **_: Any
) -> dict[Key, ChildView]:
    return _child(body, namespace, labels)


@kopf.index("autoscaling", "v2", "horizontalpodautoscalers", labels=OWNED)
def inferenceservice_hpas(
    body: kopf.Body, namespace: str | None, labels: kopf.Labels, **_: Any
) -> dict[Key, ChildView]:
    return _child(body, namespace, labels)


@kopf.index("", "v1", "pods", labels=OWNED)
def inferenceservice_staging_failures(
    body: kopf.Body, namespace: str | None, labels: kopf.Labels, **_: Any
) -> dict[Key, StagingFailure]:
    failure = staging_failure(body)
    return {(namespace or "", labels[INFERENCESERVICE_LABEL]): failure} if failure else {}


def _metered(body: kopf.Body) -> MeteredPod | None:
    spot = WIRING.controller.config.spot if WIRING.controller else SPOT_PRESETS["karpenter"]
    return metered_pod(body, spot.label, spot.spot_value)


@kopf.index("", "v1", "pods", labels=OWNED)
def inferenceservice_gpu_pods(
    body: kopf.Body, namespace: str | None, labels: kopf.Labels, **_: Any
) -> dict[Key, MeteredPod]:
    pod = _metered(body)
    return {(namespace or "", labels[INFERENCESERVICE_LABEL]): pod} if pod else {}


@kopf.index("", "v1", "pods", labels=VALIDATORS)
def inferenceservice_validators(
    body: kopf.Body, namespace: str | None, labels: kopf.Labels, **_: Any
) -> dict[Key, ValidatorView]:
    return {(namespace or "", labels[VALIDATOR_LABEL]): validator_view(body)}


@kopf.on.event("", "v1", "pods", labels=VALIDATORS)
async def validator_pod_changed(namespace: str | None, labels: kopf.Labels, **kwargs: Any) -> None:
    WIRING.queue((namespace or "", labels[VALIDATOR_LABEL]), kwargs)


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
    key = (namespace or "", labels[INFERENCESERVICE_LABEL])
    # Its last state, kept until a status write settles its GPU time: the cache forgets it.
    gone = _metered(kwargs["body"]) if kwargs.get("type") == "DELETED" else None
    if gone is not None and WIRING.controller is not None:
        WIRING.controller.pod_gone(key, gone)
    WIRING.queue(key, kwargs)


# A child edited or deleted (by a person, or by anything else) reconciles its owner, which puts
# it back.
@kopf.on.event("", "v1", "services", labels=OWNED)
@kopf.on.event("policy", "v1", "poddisruptionbudgets", labels=OWNED)
@kopf.on.event("autoscaling", "v2", "horizontalpodautoscalers", labels=OWNED)
async def serving_child_changed(namespace: str | None, labels: kopf.Labels, **kwargs: Any) -> None:
    WIRING.queue((namespace or "", labels[INFERENCESERVICE_LABEL]), kwargs)
