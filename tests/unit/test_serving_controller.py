"""The InferenceService controller against an in-memory API server whose caches lag when a test
says so: children before the status that records them, a conflicting status write planned again,
a pass over a cache older than our own last write skipped, and a child applied but not yet seen
not applied twice."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from stratus import reconciling
from stratus.serving import controller as serving_controller
from stratus.serving.controller import ChildRejected
from tests.unit.fakes import ServingWorld

CHILDREN = [
    ("apply", "Service"),
    ("apply", "PodDisruptionBudget"),
    ("apply", "Deployment"),
    ("apply", "HorizontalPodAutoscaler"),
]


def raw_spec(**extra: Any) -> dict[str, Any]:
    return {
        "image": "serve:1",
        "model": {"uri": "https://m/x"},
        "replicas": {"min": 2, "max": 6},
        "autoscaling": {"metric": "cpu", "target": 70},
        "rollout": {"steps": [{"weight": 50, "pause": {}}, {"weight": 100}]},
        **extra,
    }


def healthy(condition_of: dict[str, Any]) -> tuple[str, str]:
    [found] = [c for c in condition_of["conditions"] if c["type"] == "Healthy"]
    return found["status"], found["reason"]


def steady() -> ServingWorld:
    """A Healthy InferenceService, every child in place and every cache caught up."""
    world = ServingWorld(raw_spec())
    world.reconcile()
    world.ready()
    world.cache.sync()
    world.reconcile()
    world.cache.sync()
    assert world.obj["status"]["phase"] == "Healthy"
    assert world.reconcile() is None
    assert world.kube.calls == []
    return world


# -- children before status ------------------------------------------------------------------


def test_children_are_written_before_the_status() -> None:
    world = ServingWorld(raw_spec())
    world.reconcile()
    assert world.kube.writes() == [*CHILDREN, ("patch_status", "InferenceService")]
    assert world.obj["status"]["stableRevision"]


# A 409 cannot come from a server-side apply that forces conflicts; if one does, it is a
# failure like any other, not a refusal to report.
@pytest.mark.parametrize("code", [409, 429, 500, 503])
def test_a_child_that_fails_to_apply_leaves_the_status_unwritten_until_a_pass_applies_it(
    code: int,
) -> None:
    world = ServingWorld(raw_spec())
    world.kube.fail("apply", "Deployment", ApiException(status=code, reason="Try Again"))
    with pytest.raises(ApiException):
        world.reconcile()
    assert world.kube.writes() == CHILDREN[:3]
    assert "status" not in world.obj
    assert world.kube.events == []
    # The runner retries the pass: the Deployment and what came after it are applied, the
    # Service and PDB already applied are not, and then the status is written.
    world.reconcile()
    assert world.kube.writes() == [*CHILDREN[2:], ("patch_status", "InferenceService")]
    assert [reason for _, reason, _ in world.kube.events] == ["Deployed"]


def test_a_child_the_api_server_refuses_is_named_in_the_status_until_it_is_made() -> None:
    world = ServingWorld(raw_spec())
    refusal = ApiException(status=422, reason="Unprocessable Entity")
    refusal.body = '{"message": "spec.template: Invalid value:\\n  too big"}'
    world.kube.fail("apply", "Deployment", refusal)
    with pytest.raises(ChildRejected):
        world.reconcile()
    status = world.obj["status"]
    assert healthy(status) == ("False", "ChildRejected")
    [message] = [c["message"] for c in status["conditions"] if c["type"] == "Healthy"]
    assert message.startswith("the API server rejected Deployment web-")
    assert message.endswith(": spec.template: Invalid value: too big")
    assert "stableRevision" not in status
    assert [(t, r) for t, r, _ in world.kube.events] == [("Warning", "ChildRejected")]
    # Retried before the cache has seen that status: nothing is planned from the old one.
    assert world.reconcile() == reconciling.STALE_RETRY
    assert world.kube.calls == []
    # Then the Deployment is made, and the status records it instead of the refusal.
    world.cache.sync()
    world.reconcile()
    assert world.kube.writes() == [*CHILDREN[2:], ("patch_status", "InferenceService")]
    assert world.obj["status"]["stableRevision"]
    assert healthy(world.obj["status"]) == ("False", "StableNotReady")


# -- a status write that conflicts -----------------------------------------------------------


def test_a_conflicting_status_write_is_planned_again_from_the_fresh_cache() -> None:
    world = ServingWorld(raw_spec())
    # Someone else writes the resource after the cache last showed it.
    world.edit({"metadata": {"labels": {"team": "search"}}})
    assert world.reconcile() == reconciling.CONFLICT_RETRY
    assert world.kube.writes() == [*CHILDREN, ("patch_status", "InferenceService")]
    assert "status" not in world.obj
    # What follows the status write waits for it: no Event yet.
    assert world.kube.events == []
    # Retried while the cache still lags: the same conflict, and no child applied again.
    assert world.reconcile() == reconciling.CONFLICT_RETRY
    assert world.kube.writes() == [("patch_status", "InferenceService")]
    # The cache catches up: the status is written over the version it now holds.
    world.cache.sync("InferenceService")
    world.reconcile()
    assert world.kube.writes() == [("patch_status", "InferenceService")]
    assert world.obj["status"]["stableRevision"]
    assert world.obj["metadata"]["labels"] == {"team": "search"}
    assert [reason for _, reason, _ in world.kube.events] == ["Deployed"]


# -- a cache older than our own last write ---------------------------------------------------


def test_a_pass_over_a_cache_older_than_our_last_write_writes_nothing() -> None:
    world = ServingWorld(raw_spec())
    world.reconcile()
    # Every cache but the resource's has caught up; the resource's still shows the version
    # our status write replaced, so a plan from it would redo what that write recorded.
    world.cache.sync("Deployment", *serving_controller.WATCHED)
    assert world.reconcile() == reconciling.STALE_RETRY
    assert world.kube.calls == []
    # Once the cache moves past that version (here, to someone else's write after ours, so
    # it never shows ours), passes plan again.
    world.edit({"metadata": {"labels": {"team": "search"}}})
    world.ready()
    world.cache.sync()
    world.reconcile()
    assert world.kube.writes() == [("patch_status", "InferenceService")]
    assert world.obj["status"]["phase"] == "Healthy"


def test_a_deleted_service_comes_back_on_a_pass_that_writes_nothing_else() -> None:
    world = steady()
    world.kube.objects.pop(("Service", "ns", "web"))
    world.cache.sync()
    world.reconcile()
    assert world.kube.writes() == [("apply", "Service")]


# -- expectations: applied, not yet seen -----------------------------------------------------


def test_a_child_applied_but_not_yet_seen_is_not_applied_twice() -> None:
    world = ServingWorld(raw_spec())
    world.reconcile()
    # Our status write's event reconciles again before the caches have seen the children.
    world.cache.sync("InferenceService")
    requeue = world.reconcile()
    assert world.kube.writes() == []
    # The expectations lapse in time, so a pass comes then even if no event does.
    assert requeue is not None
    assert requeue <= serving_controller.EXPECTATION_TTL
    # The caches catch up: the expectations are met, and still nothing is applied.
    world.cache.sync()
    assert world.reconcile() is None
    assert world.kube.writes() == []
    assert world.controller.expected == {}


def test_a_deployment_scaled_but_not_yet_seen_at_its_new_size_is_not_applied_again() -> None:
    fixed = raw_spec(replicas={"min": 2, "max": 2}, autoscaling=None)
    world = ServingWorld(fixed)
    world.reconcile()
    world.ready()
    world.cache.sync()
    world.reconcile()
    world.cache.sync()
    world.edit({"metadata": {"generation": 2}, "spec": {"replicas": {"min": 3, "max": 3}}})
    world.cache.sync()
    world.reconcile()
    assert world.kube.writes() == [("apply", "Deployment"), ("patch_status", "InferenceService")]
    # The status event comes first: the Deployment is still at 2 in the cache.
    world.cache.sync("InferenceService")
    world.reconcile()
    assert world.kube.writes() == []
    # Its ready pods are the cache's, not the expectation's.
    assert world.obj["status"]["readyReplicas"] == 2
    world.cache.sync()
    world.reconcile()
    assert world.kube.writes() == []
    assert world.controller.expected == {}


def test_an_expectation_that_lapses_leaves_the_cache_believed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    world = ServingWorld(raw_spec())
    world.reconcile()
    # Whatever was applied and is still not in the cache when its expectation lapses (deleted
    # before the watch saw it, say) is applied again.
    monkeypatch.setattr(serving_controller, "EXPECTATION_TTL", 0.0)
    world.cache.sync("InferenceService")
    world.reconcile()
    assert world.kube.writes() == CHILDREN
