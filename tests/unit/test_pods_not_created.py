"""Pods the cluster refuses to create (Pod Security admission, a missing PriorityClass, a quota)
are shown within seconds, once per distinct reason, and stop being shown when the pods come:
for a TrainingJob from its attempt Job's FailedCreate Events, for an InferenceService from its
Deployments' ReplicaFailure condition."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from stratus.api.inferenceservice import InferenceServiceSpec
from stratus.api.trainingjob import TrainingJobSpec
from stratus.conditions import one_line, timestamp
from stratus.config import SPOT_PRESETS
from stratus.podspec import Owner
from stratus.serving import planner as serving_planner
from stratus.serving.revision import revision_of
from stratus.serving.views import DeploymentView, deployment_view
from stratus.training import controller as training_controller
from stratus.training import planner
from stratus.training.views import (
    EventView,
    JobView,
    PodView,
    event_view,
    failed_create,
    job_view,
)
from tests.unit.fakes import NOW, ServingWorld, TrainingWorld

OWNER = Owner("TrainingJob", "tj", "ns", "uid-1")
REFUSAL = 'pods "tj-1-0-" is forbidden: no PriorityClass with name high was found'
QUOTA = 'pods "tj-1-1-" is forbidden: exceeded quota: q, requested: pods=1, used: pods=1'


def at(seconds_ago: float) -> dt.datetime:
    return NOW - dt.timedelta(seconds=seconds_ago)


def failed(message: str = REFUSAL, seconds_ago: float = 1) -> EventView:
    return EventView("FailedCreate", f"Error creating: {message}", at(seconds_ago))


def created(seconds_ago: float = 0) -> EventView:
    return EventView("SuccessfulCreate", "Created pod: tj-1-0-abcde", at(seconds_ago))


# -- the view: which refusal, if any, stands --------------------------------------------------


def test_the_latest_refusal_is_quoted_in_one_line_without_the_job_controllers_prefix() -> None:
    events = (failed(QUOTA, seconds_ago=9), failed("pods \n  are\tforbidden", seconds_ago=2))
    assert failed_create(events) == "pods are forbidden"
    assert failed_create((failed(QUOTA),)) == QUOTA


def test_a_pod_created_after_the_refusal_ends_it_and_a_tie_does_not() -> None:
    assert failed_create((failed(seconds_ago=5), created(seconds_ago=1))) is None
    assert failed_create((created(seconds_ago=1), failed(seconds_ago=1))) == REFUSAL
    assert failed_create((created(),)) is None
    assert failed_create(()) is None


def test_an_event_is_timed_by_its_latest_occurrence() -> None:
    series = {
        "reason": "FailedCreate",
        "message": "m",
        "eventTime": "2026-01-01T11:00:00.000000Z",
        "series": {"lastObservedTime": "2026-01-01T11:59:00.000000Z", "count": 4},
    }
    legacy = {
        "reason": "FailedCreate",
        "message": "m",
        "firstTimestamp": "2026-01-01T11:00:00Z",
        "lastTimestamp": "2026-01-01T11:58:00Z",
    }
    assert event_view(series).at == at(60)
    assert event_view(legacy).at == at(120)
    assert event_view({"reason": "FailedCreate"}) == EventView("FailedCreate", "", None)


def test_a_long_message_is_held_to_one_bounded_line() -> None:
    assert one_line("a\n" * 2000) == ("a " * 512)[:1024]


# -- the TrainingJob planner -----------------------------------------------------------------


def spec(**fields: Any) -> TrainingJobSpec:
    return TrainingJobSpec.model_validate({"image": "train:1", **fields})


def job(seconds_old: float, *, suspended: bool = False) -> JobView:
    return JobView(
        name="tj-1",
        attempt=1,
        complete=False,
        failed=False,
        failed_reason="",
        failed_message="",
        finished_at=None,
        started_at=None,
        active=0,
        ready=0,
        uid="job-uid",
        created_at=timestamp(at(seconds_old)),
        suspended=suspended,
    )


def pod(name: str = "tj-1-0-x", *, deleted: bool = False) -> PodView:
    return PodView(
        name=name,
        attempt=1,
        phase="Pending",
        node=None,
        deleted=deleted,
        disrupted=False,
        unschedulable=None,
        exit_code=None,
        termination_message=None,
    )


def run(
    s: TrainingJobSpec,
    status: dict[str, Any],
    jobs: tuple[JobView, ...],
    pods: tuple[PodView, ...] = (),
    events: tuple[EventView, ...] | None = None,
) -> planner.Plan:
    observed = planner.Observed(
        owner=OWNER,
        generation=1,
        spec=s,
        spec_error=None,
        status=status,
        jobs=jobs,
        pods=pods,
        now=NOW,
        job_events=events,
    )
    return planner.plan(observed, SPOT_PRESETS["karpenter"])


def started(s: TrainingJobSpec) -> dict[str, Any]:
    return run(s, {}, ()).status


def conditions(status: dict[str, Any]) -> dict[str, tuple[str, str, str]]:
    return {c["type"]: (c["status"], c["reason"], c["message"]) for c in status["conditions"]}


def test_a_job_without_pods_is_given_a_moment_before_its_events_are_read() -> None:
    s = spec()
    plan = run(s, started(s), (job(1),))
    assert plan.read_events is None
    assert plan.requeue_after == 1.0
    assert conditions(plan.status)["Scheduled"][1] == "Pending"


def test_a_job_without_pods_past_the_moment_asks_for_its_events_and_to_look_again() -> None:
    s = spec()
    plan = run(s, started(s), (job(5),))
    assert plan.read_events == job(5)
    assert plan.requeue_after == planner.PODS_RECHECK
    # Looked at less often the longer it lasts.
    assert run(s, started(s), (job(60),)).requeue_after == 20.0
    assert run(s, started(s), (job(3600),)).requeue_after == planner.PODS_RECHECK_MAX


def test_a_refusal_is_shown_with_the_api_servers_message_and_one_warning() -> None:
    s = spec()
    plan = run(s, started(s), (job(5),), events=(failed(),))
    message = f"attempt 1 cannot create its pods: {REFUSAL}"
    assert conditions(plan.status)["Ready"] == ("False", "PodsNotCreated", message)
    assert conditions(plan.status)["Scheduled"] == ("False", "PodsNotCreated", message)
    assert plan.status["phase"] == "Pending"
    assert plan.status["message"] == message
    assert [(e.type, e.reason, e.message) for e in plan.events] == [
        ("Warning", "PodsNotCreated", message)
    ]
    assert plan.requeue_after == planner.PODS_RECHECK
    # The same refusal again: nothing new to say.
    again = run(s, plan.status, (job(8),), events=(failed(seconds_ago=0),))
    assert again.events == []
    assert again.status == plan.status
    # A pass that has not read the Events keeps what the status says, and asks for them.
    unread = run(s, plan.status, (job(8),))
    assert unread.status == plan.status
    assert unread.read_events is not None
    # Another reason: another warning.
    other = run(s, plan.status, (job(9),), events=(failed(), failed(QUOTA, seconds_ago=0)))
    assert [e.message for e in other.events] == [f"attempt 1 cannot create its pods: {QUOTA}"]


def test_a_refusal_clears_by_itself_when_the_pods_come() -> None:
    s = spec()
    refused = run(s, started(s), (job(5),), events=(failed(),)).status
    for pods, events in (((pod(),), None), ((), (failed(seconds_ago=3), created()))):
        plan = run(s, refused, (job(9),), pods, events)
        assert conditions(plan.status)["Ready"] == (
            "False",
            "AttemptPending",
            "attempt 1 is starting",
        )
        assert conditions(plan.status)["Scheduled"] == (
            "False",
            "Pending",
            "waiting for the scheduler",
        )
        assert plan.status["message"] == "attempt 1 is starting"
        assert plan.events == []


def test_every_worker_needs_its_pod() -> None:
    s = spec(workers=2)
    assert run(s, started(s), (job(5),), (pod(),)).read_events is not None
    # A pod deleted (its final state kept by the controller) is no pod.
    gone = (pod(), pod("tj-1-1-y", deleted=True))
    assert run(s, started(s), (job(5),), gone).read_events is not None
    assert run(s, started(s), (job(5),), (pod(), pod("tj-1-1-y"))).read_events is None


def test_a_held_back_job_is_owed_no_pods() -> None:
    s = spec()
    plan = run(s, started(s), (job(60, suspended=True),))
    assert plan.read_events is None
    assert plan.requeue_after is None


def test_the_job_view_keeps_what_the_check_needs() -> None:
    raw = {
        "metadata": {
            "name": "tj-1",
            "uid": "job-uid",
            "creationTimestamp": "2026-01-01T11:59:55Z",
            "labels": {"stratus.dev/attempt": "1"},
        },
        "spec": {"suspend": True},
    }
    view = job_view(raw)
    assert (view.uid, view.created_at, view.suspended) == (
        "job-uid",
        "2026-01-01T11:59:55Z",
        True,
    )


# -- the TrainingJob controller --------------------------------------------------------------


def job_controller_event(world: TrainingWorld, name: str, reason: str, message: str) -> None:
    """The Job controller posts an Event about the attempt's Job (at the server)."""
    job = world.kube.objects[("Job", "ns", "tj-1")]
    world.kube.put(
        {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": "ns"},
            "involvedObject": {"kind": "Job", "name": "tj-1", "uid": job["metadata"]["uid"]},
            "reason": reason,
            "message": message,
            "lastTimestamp": timestamp(NOW),
        }
    )


def test_the_controller_reads_a_refused_jobs_events_and_shows_the_refusal_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    world = TrainingWorld({"image": "train:1", "resources": {"gpu": 1}})
    world.reconcile()
    # The API server gave the Job its uid and creation time; its pods are refused.
    job = world.kube.objects[("Job", "ns", "tj-1")]
    meta = {**job["metadata"], "uid": "job-uid", "creationTimestamp": timestamp(at(5))}
    world.kube.put({**job, "metadata": meta})
    job_controller_event(world, "e1", "FailedCreate", f"Error creating: {REFUSAL}")
    # An Event about another Job of that name (an earlier one, since deleted) is not read.
    world.kube.put(
        {
            "kind": "Event",
            "metadata": {"name": "old", "namespace": "ns"},
            "involvedObject": {"kind": "Job", "name": "tj-1", "uid": "gone"},
            "reason": "FailedCreate",
            "message": f"Error creating: {QUOTA}",
            "lastTimestamp": timestamp(NOW),
        }
    )
    world.cache.sync()
    assert world.reconcile() == planner.PODS_RECHECK
    assert [c.method for c in world.kube.calls if c.method != "event"] == [
        "list_events",
        "patch_status",
    ]
    message = f"attempt 1 cannot create its pods: {REFUSAL}"
    assert conditions(world.obj["status"])["Ready"] == ("False", "PodsNotCreated", message)
    assert world.kube.events[-1] == ("Warning", "PodsNotCreated", message)
    # Looked at again: the Events are read again, and nothing is written or posted.
    world.cache.sync()
    world.kube.events.clear()
    assert world.reconcile() == planner.PODS_RECHECK
    assert [c.method for c in world.kube.calls] == ["list_events"]
    assert world.kube.events == []
    # The cause is fixed: the pods are created, and the condition clears.
    job_controller_event(world, "e2", "SuccessfulCreate", "Created pod: tj-1-0-abcde")
    world.kube.put(
        {
            "kind": "Pod",
            "metadata": {
                "name": "tj-1-0-abcde",
                "namespace": "ns",
                "labels": {"stratus.dev/attempt": "1", "stratus.dev/trainingjob": "tj"},
            },
            "status": {"phase": "Pending"},
        }
    )
    world.cache.sync()
    # Progress alone, so written with the next progress at most a second later.
    monkeypatch.setattr(training_controller, "PROGRESS_INTERVAL", 0.0)
    world.reconcile()
    assert [c.method for c in world.kube.calls] == ["patch_status"]
    assert conditions(world.obj["status"])["Ready"][1:] == (
        "AttemptPending",
        "attempt 1 is starting",
    )


def test_events_that_cannot_be_read_leave_the_refusal_shown() -> None:
    world = TrainingWorld({"image": "train:1", "resources": {"gpu": 1}})
    world.reconcile()
    job = world.kube.objects[("Job", "ns", "tj-1")]
    meta = {**job["metadata"], "uid": "job-uid", "creationTimestamp": timestamp(at(5))}
    world.kube.put({**job, "metadata": meta})
    job_controller_event(world, "e1", "FailedCreate", f"Error creating: {REFUSAL}")
    world.cache.sync()
    world.reconcile()
    world.cache.sync()
    shown = world.obj["status"]
    assert conditions(shown)["Ready"][1] == "PodsNotCreated"
    world.kube.fail("list_events", "Event", ApiException(status=403, reason="Forbidden"))
    assert world.reconcile() == planner.PODS_RECHECK
    assert [c.method for c in world.kube.calls] == ["list_events"]
    assert world.obj["status"] == shown


# -- the InferenceService --------------------------------------------------------------------

SERVING_QUOTA = 'pods "web-1a2b3c-7d9f8-" is forbidden: exceeded quota: q, limited: pods=0'


def replica_failure(message: str) -> dict[str, Any]:
    return {
        "type": "ReplicaFailure",
        "status": "True",
        "reason": "FailedCreate",
        "message": message,
    }


def test_the_deployment_view_quotes_its_replica_failure_in_one_line() -> None:
    raw = {
        "metadata": {"name": "web-1", "labels": {}},
        "status": {
            "conditions": [
                {"type": "Available", "status": "False"},
                replica_failure(f"  {SERVING_QUOTA}\n"),
            ]
        },
    }
    assert deployment_view(raw).replica_failure == SERVING_QUOTA
    cleared = {**raw, "status": {"conditions": [{**replica_failure("x"), "status": "False"}]}}
    assert deployment_view(cleared).replica_failure is None


def serving_spec(image: str = "serve:1") -> InferenceServiceSpec:
    return InferenceServiceSpec.model_validate(
        {
            "image": image,
            "model": {"uri": "https://m/x"},
            "replicas": {"min": 2, "max": 2},
            "rollout": {"steps": [{"weight": 50, "pause": {"duration": "1m"}}, {"weight": 100}]},
        }
    )


def serve(
    s: InferenceServiceSpec, status: dict[str, Any], *deployments: DeploymentView
) -> serving_planner.Plan:
    return serving_planner.plan(
        serving_planner.Observed(
            owner=Owner("InferenceService", "web", "ns", "uid"),
            generation=1,
            spec=s,
            status=status,
            annotations={},
            deployments=deployments,
            staging_failures=(),
            now=NOW,
            staging_image="img",
        )
    )


def healthy(status: dict[str, Any]) -> tuple[str, str, str]:
    return conditions(status)["Healthy"]


def test_a_stable_revision_that_cannot_create_pods_says_why_once() -> None:
    s = serving_spec()
    revision = revision_of(s)
    first = serve(s, {})
    refused = DeploymentView(f"web-{revision}", revision, 2, 0, replica_failure=SERVING_QUOTA)
    plan = serve(s, first.status, refused)
    message = f"revision {revision} cannot create pods: {SERVING_QUOTA}"
    assert healthy(plan.status) == ("False", "PodsNotCreated", message)
    assert plan.status["phase"] == "Progressing"
    assert [(e.type, e.reason, e.message) for e in plan.events] == [
        ("Warning", "PodsNotCreated", message)
    ]
    again = serve(s, plan.status, refused)
    assert again.events == []
    assert again.status == plan.status
    # The quota goes: the ReplicaFailure condition clears, the pods come.
    fine = DeploymentView(f"web-{revision}", revision, 2, 2)
    recovered = serve(s, plan.status, fine)
    assert healthy(recovered.status)[:2] == ("True", "StableReady")
    assert recovered.status["phase"] == "Healthy"


def test_a_canary_that_cannot_create_pods_names_its_revision() -> None:
    old, new = serving_spec("serve:1"), serving_spec("serve:2")
    stable, canary = revision_of(old), revision_of(new)
    status = serve(old, {}).status
    serving = DeploymentView(f"web-{stable}", stable, 2, 2)
    status = serve(new, status, serving).status
    assert status["canaryRevision"] == canary
    refused = DeploymentView(f"web-{canary}", canary, 1, 0, replica_failure=SERVING_QUOTA)
    plan = serve(new, status, serving, refused)
    assert healthy(plan.status) == (
        "False",
        "PodsNotCreated",
        f"revision {canary} cannot create pods: {SERVING_QUOTA}",
    )
    assert [e.reason for e in plan.events] == ["PodsNotCreated"]


def test_a_healthy_stable_is_not_called_unhealthy() -> None:
    s = serving_spec()
    revision = revision_of(s)
    first = serve(s, {})
    # Two replicas ready (replicas.min), a third refused (an autoscaler asked for it).
    partly = DeploymentView(f"web-{revision}", revision, 3, 2, replica_failure=SERVING_QUOTA)
    plan = serve(s, first.status, partly)
    assert healthy(plan.status)[:2] == ("True", "StableReady")
    assert "PodsNotCreated" not in [e.reason for e in plan.events]


def test_the_serving_controller_shows_a_replica_failure_and_recovers() -> None:
    world = ServingWorld(
        {
            "image": "serve:1",
            "model": {"uri": "https://m/x"},
            "replicas": {"min": 2, "max": 2},
        }
    )
    world.reconcile()
    [deployment] = world.kube.of("Deployment")
    world.kube.put({**deployment, "status": {"conditions": [replica_failure(SERVING_QUOTA)]}})
    world.cache.sync()
    world.reconcile()
    status = world.obj["status"]
    assert healthy(status)[1] == "PodsNotCreated"
    assert SERVING_QUOTA in healthy(status)[2]
    assert [r for _, r, _ in world.kube.events].count("PodsNotCreated") == 1
    # Nothing new: no write, no Event.
    world.cache.sync()
    world.reconcile()
    assert world.kube.writes() == []
    assert [r for _, r, _ in world.kube.events].count("PodsNotCreated") == 1
    # The quota is deleted: the ReplicaSet makes its pods and the condition goes.
    world.ready()
    world.cache.sync()
    world.reconcile()
    assert healthy(world.obj["status"])[:2] == ("True", "StableReady")
