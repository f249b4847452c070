"""The TrainingJob controller against an in-memory API server whose caches lag when a test says
so: an attempt's Job before the status that names it, a conflicting status write planned again
without a second Job, a pass over a cache older than our own last write skipped, and a Job
created but not yet seen not created twice."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException
from prometheus_client import REGISTRY

from stratus import reconciling
from stratus.training import controller as training_controller
from stratus.training.views import KUEUE_GROUP, KUEUE_VERSION
from tests.unit.fakes import TrainingWorld

STATUS = ("patch_status", "TrainingJob")


def raw_spec(**extra: Any) -> dict[str, Any]:
    return {"image": "train:1", "resources": {"gpu": 1}, **extra}


def ready(status: dict[str, Any]) -> tuple[str, str, str]:
    [found] = [c for c in status["conditions"] if c["type"] == "Ready"]
    return found["status"], found["reason"], found["message"]


def complete(world: TrainingWorld) -> None:
    """The first attempt's Job completes (at the server)."""
    job = world.kube.objects[("Job", "ns", "tj-1")]
    done = {"type": "Complete", "status": "True"}
    world.kube.put({**job, "status": {"conditions": [done], "startTime": "2026-01-01T11:00:00Z"}})


def reasons(world: TrainingWorld) -> list[str]:
    return [reason for _, reason, _ in world.kube.events]


def attempts() -> float:
    """Attempts counted by the metrics so far (in this process)."""
    return REGISTRY.get_sample_value("stratus_training_attempts_total", {"team": "other"}) or 0.0


# -- children before status ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("workers", "children"),
    [(1, [("create", "Job")]), (2, [("create", "Service"), ("create", "Job")])],
)
def test_an_attempts_children_are_created_before_the_status_that_names_them(
    workers: int, children: list[tuple[str, str]]
) -> None:
    world = TrainingWorld(raw_spec(workers=workers))
    world.reconcile()
    assert world.kube.writes() == [*children, STATUS]
    assert world.obj["status"]["activeJob"] == "tj-1"
    assert ("Job", "ns", "tj-1") in world.kube.objects


@pytest.mark.parametrize("code", [429, 500, 503])
def test_a_job_that_fails_to_create_leaves_the_status_unwritten_until_a_pass_creates_it(
    code: int,
) -> None:
    before = attempts()
    world = TrainingWorld(raw_spec())
    world.kube.fail("create", "Job", ApiException(status=code, reason="Try Again"))
    with pytest.raises(ApiException):
        world.reconcile()
    assert world.kube.writes() == [("create", "Job")]
    assert "status" not in world.obj
    assert world.kube.events == []
    assert attempts() - before == 0
    # The runner retries the pass: the Job is created, then the status names it.
    world.reconcile()
    assert world.kube.writes() == [("create", "Job"), STATUS]
    assert world.obj["status"]["activeJob"] == "tj-1"
    assert reasons(world) == ["AttemptStarted"]
    assert attempts() - before == 1


def test_a_job_the_api_server_refuses_is_named_in_the_status_until_it_is_made() -> None:
    world = TrainingWorld(raw_spec())
    refusal = ApiException(status=403, reason="Forbidden")
    refusal.body = '{"message": "jobs.batch is forbidden: exceeded quota: gpus"}'
    world.kube.fail("create", "Job", refusal)
    with pytest.raises(ApiException):
        world.reconcile()
    status = world.obj["status"]
    assert ready(status) == (
        "False",
        "CreateFailed",
        "the API server rejected Job tj-1: jobs.batch is forbidden: exceeded quota: gpus",
    )
    assert "activeJob" not in status
    assert [(t, r) for t, r, _ in world.kube.events] == [("Warning", "CreateFailed")]
    # Retried before the cache has seen that status: nothing is planned from the old one.
    assert world.reconcile() == reconciling.STALE_RETRY
    assert world.kube.calls == []
    # The quota frees up: the Job is made, and the status names it instead of the refusal.
    world.cache.sync()
    world.reconcile()
    assert world.kube.writes() == [("create", "Job"), STATUS]
    assert world.obj["status"]["activeJob"] == "tj-1"
    assert ready(world.obj["status"])[:2] == ("False", "AttemptPending")


# -- a status write that conflicts -----------------------------------------------------------


def test_a_conflicting_status_write_is_planned_again_without_a_second_job() -> None:
    before = attempts()
    world = TrainingWorld(raw_spec())
    # Someone else writes the resource after the cache last showed it.
    world.edit({"metadata": {"labels": {"team": "vision"}}})
    assert world.reconcile() == reconciling.CONFLICT_RETRY
    assert world.kube.writes() == [("create", "Job"), STATUS]
    assert "status" not in world.obj
    # What follows the status write waits for it: no Event, nothing counted.
    assert world.kube.events == []
    assert attempts() - before == 0
    # Retried while the cache still lags: the same conflict, and the Job is not created again.
    assert world.reconcile() == reconciling.CONFLICT_RETRY
    assert world.kube.writes() == [STATUS]
    # The cache catches up with the resource (not yet with the Job): the status records the
    # attempt and its Job, once.
    world.cache.sync("TrainingJob")
    world.reconcile()
    assert world.kube.writes() == [STATUS]
    assert world.obj["status"]["activeJob"] == "tj-1"
    assert world.obj["status"]["attempt"] == 1
    assert world.obj["metadata"]["labels"] == {"team": "vision"}
    assert reasons(world) == ["AttemptStarted"]
    assert attempts() - before == 1


# -- a cache older than our own last write ---------------------------------------------------


def test_a_pass_over_a_cache_older_than_our_last_write_writes_nothing() -> None:
    world = TrainingWorld(raw_spec())
    world.reconcile()
    # The Job finishes, and the Job cache shows it; the TrainingJob cache still shows the
    # version our status write replaced, so a plan from it would redo what that write did.
    complete(world)
    world.cache.sync("Job")
    assert world.reconcile() == reconciling.STALE_RETRY
    assert world.kube.calls == []
    # Once the cache shows our write, the pass plans from it.
    world.cache.sync("TrainingJob")
    world.reconcile()
    assert world.kube.writes() == [STATUS]
    assert world.obj["status"]["phase"] == "Succeeded"
    assert world.obj["status"]["attempt"] == 1


def test_the_skip_ends_when_the_cache_moves_past_our_write() -> None:
    world = TrainingWorld(raw_spec())
    world.reconcile()
    # Someone else's write lands after ours, and the cache shows that one, never ours.
    world.edit({"metadata": {"labels": {"team": "vision"}}})
    complete(world)
    world.cache.sync()
    world.reconcile()
    assert world.kube.writes() == [STATUS]
    assert world.obj["status"]["phase"] == "Succeeded"


# -- expectations: created, not yet seen -----------------------------------------------------


def test_a_job_created_but_not_yet_seen_is_not_created_twice() -> None:
    world = TrainingWorld(raw_spec())
    world.reconcile()
    # Our status write's event reconciles again before the Job cache has seen the Job.
    world.cache.sync("TrainingJob")
    world.reconcile()
    assert world.kube.writes() == []
    assert list(world.controller.expected[world.key]) == ["tj-1"]
    # The cache catches up: the expectation is met.
    world.cache.sync()
    world.reconcile()
    assert world.kube.writes() == []
    assert world.controller.expected == {world.key: {}}


def test_an_expectation_that_lapses_leaves_the_cache_believed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    world = TrainingWorld(raw_spec())
    world.reconcile()
    # A Job still not in the cache when its expectation lapses (deleted before the watch saw
    # it, say) is created again; a create of one that exists is harmless.
    monkeypatch.setattr(training_controller, "EXPECTATION_TTL", 0.0)
    world.cache.sync("TrainingJob")
    started = attempts()
    world.kube.events.clear()
    world.reconcile()
    assert world.kube.writes() == [("create", "Job")]
    assert list(world.controller.expected[world.key]) == ["tj-1"]
    # The same attempt, made again: not started, nor counted, a second time.
    assert world.kube.events == []
    assert attempts() - started == 0


def test_a_deleted_trainingjob_leaves_nothing_behind() -> None:
    world = TrainingWorld(raw_spec())
    world.reconcile()
    world.kube.objects.pop(("TrainingJob", "ns", "tj"))
    world.cache.sync()
    assert world.reconcile() is None
    assert world.kube.calls == []
    assert world.controller.expected == {}
    assert world.controller.tombstones == {}


# -- Kueue's Workloads, watched or not --------------------------------------------------------

WAITING = "couldn't assign flavors to pod set main: insufficient unused quota for nvidia.com/gpu"


@pytest.fixture
def queued(monkeypatch: pytest.MonkeyPatch) -> TrainingWorld:
    """A queued TrainingJob whose attempt's Job Kueue holds suspended, with its Workload at the
    server, waiting for quota; the cache has seen the Job but not the Workload. Progress is
    written at once."""
    monkeypatch.setattr(training_controller, "PROGRESS_INTERVAL", 0.0)
    world = TrainingWorld(raw_spec(queueName="q"))
    world.kube.served.add((f"{KUEUE_GROUP}/{KUEUE_VERSION}", "Workload"))
    world.reconcile()
    job = world.kube.objects[("Job", "ns", "tj-1")]
    assert job["spec"]["suspend"] is True
    world.kube.put({**job, "metadata": {**job["metadata"], "uid": "job-uid"}})
    world.kube.put(
        {
            "apiVersion": f"{KUEUE_GROUP}/{KUEUE_VERSION}",
            "kind": "Workload",
            "metadata": {
                "name": "job-tj-1-abcde",
                "namespace": "ns",
                "labels": {training_controller.KUEUE_JOB_UID_LABEL: "job-uid"},
                "ownerReferences": [
                    {"apiVersion": "batch/v1", "kind": "Job", "name": "tj-1", "uid": "job-uid"}
                ],
            },
            "status": {
                "conditions": [
                    {
                        "type": "QuotaReserved",
                        "status": "False",
                        "reason": "Pending",
                        "message": WAITING,
                    }
                ]
            },
        }
    )
    world.cache.sync("TrainingJob", "Job")
    return world


def test_a_workload_the_cache_lacks_is_read_from_the_server_and_looked_at_again_soon(
    queued: TrainingWorld,
) -> None:
    """kopf may miss Kueue's CRDs appearing after the operator started, and then watches no
    Workload: the attempt still says why Kueue holds it, and is looked at again on a timer."""
    world = queued
    retry = world.reconcile()
    assert ("list_labelled", "Workload") in [(c.method, c.kind) for c in world.kube.calls]
    assert ready(world.obj["status"]) == (
        "False",
        "Queued",
        f"attempt 1 is queued in LocalQueue q: {WAITING}",
    )
    assert retry == training_controller.WORKLOAD_POLL


def test_a_watched_workload_is_not_read_from_the_server(queued: TrainingWorld) -> None:
    world = queued
    world.cache.sync("Workload")
    retry = world.reconcile()
    assert "list_labelled" not in [c.method for c in world.kube.calls]
    assert ready(world.obj["status"])[2] == f"attempt 1 is queued in LocalQueue q: {WAITING}"
    assert retry is None or retry > training_controller.WORKLOAD_POLL
