"""The API on a real API server: the CRDs install, the examples are accepted, mistakes are
refused with the field named, kubectl explains and lists the resources, status is kept."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from stratus.api.common import GROUP, VERSION
from stratus.api.resources import resource_type
from tests.cases import INFS, INVALID, TJ, Invalid, all_examples, example
from tests.conftest import Cluster, kubectl
from tests.support import wait_for

pytestmark = pytest.mark.usefixtures("crds")


def create(cluster: Cluster, namespace: str, obj: dict[str, Any], dry_run: bool = False) -> Any:
    rtype = resource_type(obj["kind"])
    kwargs: dict[str, Any] = {"field_validation": "Strict"}
    if dry_run:
        kwargs["dry_run"] = "All"
    api = client.CustomObjectsApi(cluster.api)
    if rtype.scope == "Cluster":
        return api.create_cluster_custom_object(GROUP, VERSION, rtype.plural, obj, **kwargs)
    return api.create_namespaced_custom_object(
        GROUP, VERSION, namespace, rtype.plural, obj, **kwargs
    )


def test_crds_are_established(cluster: Cluster, crds: list[str]) -> None:
    ext = client.ApiextensionsV1Api(cluster.api)
    for name in crds:
        conditions = {
            c.type: c.status for c in ext.read_custom_resource_definition(name).status.conditions
        }
        assert conditions["Established"] == "True"
        assert conditions["NamesAccepted"] == "True"


@pytest.mark.parametrize("obj", all_examples(), ids=lambda o: o["metadata"]["name"])
def test_examples_are_accepted_and_defaulted(
    cluster: Cluster, namespace: str, obj: dict[str, Any]
) -> None:
    create(cluster, namespace, obj, dry_run=True)
    stored = create(cluster, namespace, obj)
    assert stored["spec"]["image"] == obj["spec"]["image"]
    # Omitted fields come back with the models' defaults.
    assert stored["spec"]["resources"]["gpu"] >= 1
    if obj["kind"] == "TrainingJob":
        assert stored["spec"]["suspend"] is False
    else:
        assert stored["spec"]["rollout"]["trafficRouting"] == {}


def test_at_least_twenty_distinct_mistakes_are_covered() -> None:
    assert len({case.field for case in INVALID}) >= 20


@pytest.mark.parametrize("case", INVALID, ids=lambda c: c.id)
def test_invalid_resources_are_refused_naming_the_field(
    cluster: Cluster, namespace: str, case: Invalid
) -> None:
    with pytest.raises(ApiException) as refused:
        create(cluster, namespace, case.build(), dry_run=True)
    assert refused.value.status in (400, 422), refused.value.body
    assert case.field in refused.value.body, refused.value.body


def test_kubectl_explain_prints_the_descriptions(cluster: Cluster) -> None:
    # The API server publishes a new CRD's OpenAPI a moment after it is Established.
    def explained() -> str | None:
        try:
            return kubectl(cluster, "explain", "trainingjob.spec.spot")
        except AssertionError:
            return None

    text = wait_for("kubectl explain", explained, timeout=60, interval=1)
    assert "fallbackToOnDemandAfter" in text
    assert "Preemptions survived" in text
    infs = kubectl(cluster, "explain", "infs.spec.rollout.steps")
    assert "weight" in infs
    assert "share of traffic" in infs


@pytest.mark.before_operator
def test_kubectl_get_shows_the_printer_columns(cluster: Cluster, namespace: str) -> None:
    create(cluster, namespace, example(TJ))
    create(cluster, namespace, example(INFS))
    tj = kubectl(cluster, "get", "tj", "-n", namespace).splitlines()
    assert tj[0].split() == ["NAME", "PHASE", "ATTEMPT", "PREEMPTIONS", "GPUS", "CHECKPOINT", "AGE"]
    assert tj[1].split()[:2] == ["llama-finetune-spot", "1"]  # status empty, 1 GPU per worker
    infs = kubectl(cluster, "get", "infs", "-n", namespace).splitlines()
    assert infs[0].split() == ["NAME", "PHASE", "STABLE", "CANARY", "WEIGHT", "READY", "AGE"]
    everything = kubectl(cluster, "get", "stratus", "-n", namespace)
    assert "trainingjob.stratus.dev/llama-finetune-spot" in everything
    assert "inferenceservice.stratus.dev/sentiment" in everything


@pytest.mark.before_operator
def test_status_keeps_whatever_the_operator_writes(cluster: Cluster, namespace: str) -> None:
    api = client.CustomObjectsApi(cluster.api)
    created = create(cluster, namespace, example(TJ))
    status = {
        "phase": "Running",
        "attempt": 2,
        "preemptions": 1,
        "restarts": 0,
        "lastCheckpoint": {"path": "/checkpoints/step-100", "step": 100},
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "AttemptRunning",
                "message": "",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            }
        ],
        "futureField": {"kept": True},
    }
    body = copy.deepcopy(created)
    body["status"] = status
    api.replace_namespaced_custom_object_status(
        GROUP, VERSION, namespace, "trainingjobs", created["metadata"]["name"], body
    )
    stored = api.get_namespaced_custom_object(
        GROUP, VERSION, namespace, "trainingjobs", created["metadata"]["name"]
    )
    for key, value in status.items():
        assert stored["status"][key] == value, key
    # Status is a subresource: a spec write cannot touch it, and it does not bump generation.
    assert stored["metadata"]["generation"] == created["metadata"]["generation"]
    rows = kubectl(cluster, "get", "tj", "-n", namespace).splitlines()
    assert rows[1].split()[:6] == ["llama-finetune-spot", "Running", "2", "1", "1", "100"]
