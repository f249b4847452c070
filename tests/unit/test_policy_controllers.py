"""Both controllers under the workload policy, against the in-memory API server: a resource the
policy refuses gets no child, a status naming the field and one Event; fixed, it proceeds; the
admin's opt-out lets it through."""

from __future__ import annotations

from typing import Any

import pytest

from stratus.config import OperatorConfig
from stratus.policy import WorkloadPolicy
from tests.unit.fakes import ServingWorld, TrainingWorld, World

HOST_NETWORK = {"podTemplate": {"spec": {"hostNetwork": True}}}
FIELD = "spec.podTemplate.spec.hostNetwork"


def training(**extra: Any) -> TrainingWorld:
    return TrainingWorld({"image": "train:1", "resources": {"gpu": 1}, **extra})


def serving(**extra: Any) -> ServingWorld:
    model = {"uri": "https://models.example.com/m.bin"}
    return ServingWorld({"image": "serve:1", "model": model, **extra})


def condition(world: World, kind: str) -> dict[str, Any]:
    [found] = [c for c in world.obj["status"]["conditions"] if c["type"] == kind]
    return dict(found)


@pytest.mark.parametrize(("make", "kind"), [(training, "Ready"), (serving, "Healthy")])
def test_a_refused_resource_gets_no_child_a_named_field_and_one_event(make: Any, kind: str) -> None:
    world: World = make(**HOST_NETWORK)
    world.reconcile()
    assert [method for method, _ in world.kube.writes()] == ["patch_status"]
    refused = condition(world, kind)
    assert (refused["status"], refused["reason"]) == ("False", "PolicyViolation")
    assert refused["message"].startswith(f"{FIELD}: shares the node's network namespace")
    assert world.kube.events == [("Warning", "PolicyViolation", refused["message"])]
    world.cache.sync()
    world.reconcile()
    assert world.kube.calls == []  # nothing rewritten, nothing posted again
    world.edit({"spec": {"podTemplate": {"spec": {"hostNetwork": False}}}})
    world.cache.sync()
    world.reconcile()
    assert {kind for method, kind in world.kube.writes() if method in ("create", "apply")} & {
        "Job",
        "Deployment",
    }
    assert condition(world, kind)["reason"] != "PolicyViolation"


def test_the_admins_opt_out_lets_the_same_resource_through() -> None:
    world = training(**HOST_NETWORK)
    world.controller.config = OperatorConfig(workload_policy=WorkloadPolicy("none"))
    world.reconcile()
    [job] = world.kube.of("Job")
    assert job["spec"]["template"]["spec"]["hostNetwork"] is True
    assert "PolicyViolation" not in [reason for _, reason, _ in world.kube.events]


def test_a_foreign_service_account_is_refused_unless_allowed() -> None:
    spec = {"podTemplate": {"spec": {"serviceAccountName": "model-reader"}}}
    refused = serving(**spec)
    refused.reconcile()
    assert refused.kube.of("Deployment") == []
    assert "serviceAccountName" in condition(refused, "Healthy")["message"]
    allowed = ServingWorld(
        refused.obj["spec"],
        OperatorConfig(workload_policy=WorkloadPolicy("baseline", ("model-reader",))),
    )
    allowed.reconcile()
    [deployment] = allowed.kube.of("Deployment")
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "model-reader"
