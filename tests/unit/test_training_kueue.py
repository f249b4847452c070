"""TrainingJobs under Kueue, without a cluster: Jobs created suspended, Queued with Kueue's
words while it holds them, its flavors choosing spot or on-demand, and an eviction counted as a
preemption."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from stratus.api.trainingjob import TrainingJobSpec
from stratus.config import SPOT_PRESETS
from stratus.podspec import Owner
from stratus.training import builders, planner
from stratus.training.views import (
    JobView,
    PodView,
    WorkloadView,
    job_view,
    pod_view,
    with_capacity,
    workload_job,
    workload_view,
)

NOW = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
OWNER = Owner("TrainingJob", "tj", "ns", "uid-1")
KARPENTER = SPOT_PRESETS["karpenter"]
CAPACITY = "karpenter.sh/capacity-type"


def spec(**fields: Any) -> TrainingJobSpec:
    return TrainingJobSpec.model_validate(
        {"image": "train:1", "queueName": "team-a", "resources": {"gpu": 2}, **fields}
    )


def job(attempt: int, *, suspended: bool = False, ready: int = 0) -> JobView:
    return JobView(
        name=f"tj-{attempt}",
        attempt=attempt,
        complete=False,
        failed=False,
        failed_reason="",
        failed_message="",
        finished_at=None,
        started_at=None if suspended else "2026-01-01T11:50:00Z",
        active=0 if suspended else 1,
        ready=ready,
        suspended=suspended,
        created_at="2026-01-01T11:40:00Z",
    )


def pod(attempt: int, *, started: str | None = "2026-01-01T11:50:00Z") -> PodView:
    return PodView(
        name=f"tj-{attempt}-0",
        attempt=attempt,
        phase="Running" if started else "Pending",
        node="gpu-spot-0",
        deleted=False,
        disrupted=False,
        unschedulable=None,
        exit_code=None,
        termination_message=None,
        started_at=started,
    )


def workload(
    attempt: int,
    *,
    admitted: bool = False,
    evicted: bool = False,
    reason: str = "Pending",
    message: str = "couldn't assign flavors to pod set main: insufficient unused quota",
) -> WorkloadView:
    return WorkloadView(
        name=f"job-tj-{attempt}-abcde",
        job=f"tj-{attempt}",
        admitted=admitted,
        evicted=evicted,
        reason=reason,
        message=message,
        cluster_queue="gpu" if admitted or evicted else None,
    )


def stopped(attempt: int) -> PodView:
    return dataclasses.replace(pod(attempt), phase="Failed", finished_at="2026-01-01T11:59:00Z")


def run(
    s: TrainingJobSpec,
    status: dict[str, Any] | None = None,
    jobs: tuple[JobView, ...] = (),
    pods: tuple[PodView, ...] = (),
    workloads: tuple[WorkloadView, ...] = (),
) -> planner.Plan:
    observed = planner.Observed(
        owner=OWNER,
        generation=1,
        spec=s,
        spec_error=None,
        status=status or {},
        jobs=jobs,
        pods=pods,
        now=NOW,
        workloads=workloads,
    )
    return planner.plan(observed, KARPENTER)


def ready(status: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == "Ready")


def placement(manifest: dict[str, Any]) -> tuple[list[Any], list[Any]]:
    pod_spec = manifest["spec"]["template"]["spec"]
    terms = [
        expr
        for term in (
            pod_spec.get("affinity", {})
            .get("nodeAffinity", {})
            .get("requiredDuringSchedulingIgnoredDuringExecution", {})
            .get("nodeSelectorTerms", [])
        )
        for expr in term["matchExpressions"]
        if expr["key"] == CAPACITY
    ]
    tolerations = [t for t in pod_spec.get("tolerations", []) if t["key"] == CAPACITY]
    return terms, tolerations


# -- builders -------------------------------------------------------------------------------


def test_a_queued_attempt_is_created_suspended_with_the_queue_label() -> None:
    built = builders.build_job(
        OWNER, spec(), builders.AttemptPlan(1, None, on_spot=False, queued=True), KARPENTER
    )
    assert built["spec"]["suspend"] is True
    assert built["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    # Not on spot: kept off spot nodes, so Kueue's spot flavor does not fit it either.
    terms, tolerations = placement(built)
    assert terms == [{"key": CAPACITY, "operator": "NotIn", "values": ["spot"]}]
    assert tolerations == []
    assert built["metadata"]["labels"]["stratus.dev/capacity-type"] == "on-demand"


def test_an_unqueued_attempt_is_not_suspended() -> None:
    built = builders.build_job(
        OWNER, spec(queueName=None), builders.AttemptPlan(1, None, on_spot=True), KARPENTER
    )
    assert "suspend" not in built["spec"]
    terms, _ = placement(built)
    assert terms == [{"key": CAPACITY, "operator": "In", "values": ["spot"]}]
    assert built["metadata"]["labels"]["stratus.dev/capacity-type"] == "spot"
    labels = built["spec"]["template"]["metadata"]["labels"]
    assert labels["stratus.dev/capacity-type"] == "spot"


def test_a_flexible_attempt_tolerates_spot_and_leaves_the_choice_to_kueues_flavors() -> None:
    built = builders.build_job(
        OWNER,
        spec(),
        builders.AttemptPlan(1, None, on_spot=True, flexible=True, queued=True),
        KARPENTER,
    )
    terms, tolerations = placement(built)
    assert terms == []
    assert tolerations == [
        {"key": CAPACITY, "operator": "Equal", "value": "spot", "effect": "NoSchedule"}
    ]
    # Its capacity type is the flavor Kueue admits it on, not known here.
    assert "stratus.dev/capacity-type" not in built["metadata"]["labels"]
    assert "stratus.dev/capacity-type" not in built["spec"]["template"]["metadata"]["labels"]


# -- views ----------------------------------------------------------------------------------


def raw_workload(conditions: list[dict[str, str]], admission: dict[str, Any] | None = None) -> Any:
    return {
        "metadata": {
            "name": "job-tj-1-abcde",
            "ownerReferences": [
                {"apiVersion": "batch/v1", "kind": "Job", "name": "tj-1", "controller": True}
            ],
        },
        "status": {
            "conditions": [{"status": "True", **c} for c in conditions],
            **({"admission": admission} if admission else {}),
        },
    }


def test_a_pending_workload_says_why_in_kueues_words() -> None:
    raw = raw_workload(
        [
            {
                "type": "QuotaReserved",
                "status": "False",
                "reason": "Pending",
                "message": "couldn't assign flavors to pod set main:\n insufficient quota",
            }
        ]
    )
    view = workload_view(raw)
    assert workload_job(raw) == "tj-1"
    assert (view.job, view.admitted, view.evicted) == ("tj-1", False, False)
    assert view.reason == "Pending"
    assert view.message == "couldn't assign flavors to pod set main: insufficient quota"


def test_an_evicted_workload_says_why() -> None:
    raw = raw_workload(
        [
            {"type": "QuotaReserved", "status": "False", "reason": "Pending"},
            {
                "type": "Evicted",
                "reason": "Preempted",
                "message": "Preempted to accommodate a workload (UID: u) due to prioritization",
            },
        ],
        {"clusterQueue": "gpu"},
    )
    view = workload_view(raw)
    assert (view.evicted, view.reason, view.cluster_queue) == (True, "Preempted", "gpu")
    assert view.message.startswith("Preempted to accommodate")


def test_a_workload_of_no_job_is_not_ours() -> None:
    raw = raw_workload([])
    raw["metadata"]["ownerReferences"][0]["kind"] = "JobSet"
    assert workload_job(raw) is None


def test_the_capacity_type_comes_from_the_label_else_from_kueues_node_selector() -> None:
    admitted = job_view(
        {
            "metadata": {"name": "tj-1", "labels": {"stratus.dev/attempt": "1"}},
            "spec": {"template": {"spec": {"nodeSelector": {CAPACITY: "on-demand", "a": "b"}}}},
        }
    )
    assert admitted.capacity is None
    assert with_capacity(admitted, CAPACITY, "spot").capacity == "on-demand"
    spot_pod = pod_view({"metadata": {"name": "p"}, "spec": {"nodeSelector": {CAPACITY: "spot"}}})
    assert with_capacity(spot_pod, CAPACITY, "spot").capacity == "spot"
    # A queued Job (no flavor yet): unknown.
    queued = dataclasses.replace(admitted, node_selector=())
    assert with_capacity(queued, CAPACITY, "spot").capacity is None
    labelled = dataclasses.replace(admitted, capacity="spot")
    assert with_capacity(labelled, CAPACITY, "spot").capacity == "spot"


# -- planner --------------------------------------------------------------------------------


def test_a_new_queued_trainingjob_is_queued_at_once_and_flexible_on_spot() -> None:
    plan = run(spec(spot={"enabled": True}))
    (created,) = plan.create
    assert created["spec"]["suspend"] is True
    terms, tolerations = placement(created)
    assert (terms, len(tolerations)) == ([], 1)
    assert plan.status["phase"] == "Queued"
    assert ready(plan.status)["reason"] == "Queued"
    assert [e.reason for e in plan.events] == ["AttemptStarted", "Queued"]
    assert plan.events[0].message == (
        "attempt 1 started on spot or on-demand capacity, whichever Kueue's flavors admit it on"
    )


def test_a_spot_only_gate_keeps_a_queued_attempt_on_spot() -> None:
    hold = planner.Hold("BudgetSpotOnly", "budget b allows spot only", spot_only=True)
    observed = planner.Observed(
        owner=OWNER,
        generation=1,
        spec=spec(spot={"enabled": True}),
        spec_error=None,
        status={},
        jobs=(),
        pods=(),
        now=NOW,
        holds=(hold,),
    )
    (created,) = planner.plan(observed, KARPENTER).create
    terms, _ = placement(created)
    assert terms == [{"key": CAPACITY, "operator": "In", "values": ["spot"]}]


def test_while_kueue_holds_the_job_the_trainingjob_is_queued_with_kueues_message() -> None:
    first = run(spec())
    plan = run(spec(), first.status, (job(1, suspended=True),), (), (workload(1),))
    assert plan.status["phase"] == "Queued"
    condition = ready(plan.status)
    assert condition["status"] == "False"
    assert condition["reason"] == "Queued"
    assert condition["message"] == (
        "attempt 1 is queued in LocalQueue team-a: couldn't assign flavors to pod set main: "
        "insufficient unused quota"
    )
    assert plan.status["message"] == condition["message"]
    # Said once, when it started to wait; no request for the Job's Events while suspended.
    assert plan.events == []
    assert plan.read_events is None
    assert plan.create == []


def test_admitted_the_attempt_runs_and_says_on_which_capacity() -> None:
    queued = run(spec(), run(spec()).status, (job(1, suspended=True),), (), (workload(1),))
    admitted = dataclasses.replace(job(1, ready=1), capacity="on-demand")
    plan = run(
        spec(), queued.status, (admitted,), (pod(1),), (workload(1, admitted=True, reason=""),)
    )
    assert plan.status["phase"] == "Running"
    (event,) = plan.events
    assert event.reason == "Admitted"
    assert event.message == "attempt 1 admitted by Kueue to ClusterQueue gpu on on-demand capacity"
    again = run(spec(), plan.status, (admitted,), (pod(1),), (workload(1, admitted=True),))
    assert again.events == []


def test_a_kueue_eviction_is_a_preemption_and_the_next_attempt_resumes_queued() -> None:
    status = run(spec(spot={"enabled": True})).status
    status["lastCheckpoint"] = {"path": "/checkpoints/step-40", "step": 40}
    evicted = workload(
        1,
        evicted=True,
        reason="Preempted",
        message="Preempted to accommodate a workload (UID: u) due to prioritization",
    )
    running = dataclasses.replace(job(1, ready=1), capacity="spot")
    plan = run(spec(spot={"enabled": True}), status, (running,), (stopped(1),), (evicted,))
    assert plan.status["preemptions"] == 1
    assert plan.status["restarts"] == 0
    assert plan.status["attempt"] == 2
    assert "tj-1" in plan.delete_jobs
    # Two GPUs for the nine minutes the pod ran.
    assert plan.gpu_seconds == 2 * 9 * 60
    assert plan.counts == ["preemptions", "attempts", "resumes"]
    reasons = [e.reason for e in plan.events]
    assert reasons == ["Preempted", "AttemptStarted", "Resumed", "Queued"]
    assert "by Kueue (Preempted: Preempted to accommodate" in plan.events[0].message
    (created,) = plan.create
    assert created["metadata"]["name"] == "tj-2"
    assert created["spec"]["suspend"] is True
    env = {
        e["name"]: e.get("value")
        for e in created["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["STRATUS_RESUME_FROM"] == "/checkpoints/step-40"
    assert plan.status["phase"] == "Queued"


def test_a_job_suspended_again_after_it_ran_is_an_eviction_before_its_workload_is_seen() -> None:
    status = run(spec()).status
    plan = run(spec(), status, (job(1, suspended=True),), (pod(1),))
    assert plan.status["preemptions"] == 1
    assert "its Job was suspended" in plan.events[0].message


def test_a_never_admitted_job_is_not_evicted() -> None:
    status = run(spec()).status
    plan = run(spec(), status, (job(1, suspended=True),), (pod(1, started=None),))
    assert plan.status["preemptions"] == 0
    assert plan.status["phase"] == "Queued"


def test_kueue_evictions_count_toward_max_preemptions() -> None:
    status = {**run(spec()).status, "preemptions": 1}
    evicted = workload(1, evicted=True, reason="Preempted", message="m")
    plan = run(spec(spot={"maxPreemptions": 1}), status, (job(1, ready=1),), (pod(1),), (evicted,))
    assert plan.status["phase"] == "Failed"
    assert ready(plan.status)["reason"] == "PreemptionLimitExceeded"


def test_after_fallback_a_queued_attempt_is_kept_off_spot_flavors() -> None:
    s = spec(spot={"enabled": True, "maxPreemptions": 3, "fallbackToOnDemandAfter": 1})
    status = run(s).status
    evicted = workload(1, evicted=True, reason="Preempted", message="m")
    plan = run(s, status, (job(1, ready=1),), (stopped(1),), (evicted,))
    (created,) = plan.create
    terms, _ = placement(created)
    assert terms == [{"key": CAPACITY, "operator": "NotIn", "values": ["spot"]}]
    assert created["metadata"]["labels"]["stratus.dev/capacity-type"] == "on-demand"


def test_the_next_attempt_waits_for_the_evicted_ones_pods_to_stop() -> None:
    status = run(spec()).status
    evicted = workload(1, evicted=True, reason="Preempted", message="m")
    plan = run(spec(), status, (job(1, ready=1),), (pod(1),), (evicted,))
    assert plan.create == []
    assert plan.delete_jobs == ["tj-1"]
    assert plan.status["phase"] == "Restarting"


def test_the_deadline_counts_from_admission_not_from_the_wait_in_the_queue() -> None:
    s = spec(activeDeadlineSeconds=600)
    first = run(s)
    assert "startTime" not in first.status
    assert first.create[0]["spec"]["activeDeadlineSeconds"] == 600
    # Queued far longer than the deadline: still not past it.
    later = dataclasses.replace(
        planner.Observed(
            owner=OWNER,
            generation=1,
            spec=s,
            spec_error=None,
            status=first.status,
            jobs=(job(1, suspended=True),),
            pods=(),
            now=NOW + dt.timedelta(hours=2),
        ),
        workloads=(workload(1),),
    )
    queued = planner.plan(later, KARPENTER)
    assert queued.status["phase"] == "Queued"
    assert "startTime" not in queued.status
    admitted = run(s, queued.status, (job(1, ready=1),), (pod(1),), (workload(1, admitted=True),))
    assert admitted.status["phase"] == "Running"
    assert admitted.status["startTime"] == "2026-01-01T12:00:00Z"


def held_run(
    s: TrainingJobSpec,
    status: dict[str, Any],
    jobs: tuple[JobView, ...],
    pods: tuple[PodView, ...] = (),
    workloads: tuple[WorkloadView, ...] = (),
) -> planner.Plan:
    hold = planner.Hold("BudgetExhausted", "budget team-a is spent")
    observed = planner.Observed(
        owner=OWNER,
        generation=1,
        spec=s,
        spec_error=None,
        status=status,
        jobs=jobs,
        pods=pods,
        now=NOW,
        workloads=workloads,
        holds=(hold,),
    )
    return planner.plan(observed, KARPENTER)


def test_a_hold_withdraws_a_job_kueue_never_admitted_and_its_return_counts_nothing() -> None:
    status = run(spec()).status
    plan = held_run(spec(), status, (job(1, suspended=True),), (), (workload(1),))
    assert plan.delete_jobs == ["tj-1"]
    assert plan.status["phase"] == "Waiting"
    assert ready(plan.status)["reason"] == "BudgetExhausted"
    assert plan.status["activeJob"] == "tj-1"
    assert [e.reason for e in plan.events] == ["BudgetExhausted"]
    # Gone, it is not made again while the hold stands.
    gone = held_run(spec(), plan.status, ())
    assert (gone.create, gone.events, gone.status["phase"]) == ([], [], "Waiting")
    # The hold lifted: the same attempt, queued again, not counted again.
    back = run(spec(), gone.status)
    (created,) = back.create
    assert created["metadata"]["name"] == "tj-1"
    assert created["spec"]["suspend"] is True
    assert back.status["attempt"] == 1
    assert back.counts == []
    assert [e.reason for e in back.events] == ["Queued"]
    assert back.status["phase"] == "Queued"


def test_a_hold_does_not_stop_an_admitted_attempt() -> None:
    status = run(spec()).status
    admitted = (workload(1, admitted=True, reason=""),)
    plan = held_run(spec(), status, (job(1, ready=1),), (pod(1),), admitted)
    assert plan.delete_jobs == []
    assert plan.status["phase"] == "Running"


def test_a_flexible_attempt_of_unknown_capacity_is_billed_on_demand() -> None:
    """Kueue admitted it on a flavor whose node labels do not name the capacity type: the
    upper bound of its cost, on-demand, not spot because the spec allows spot."""
    s = spec(spot={"enabled": True})
    status = run(s).status
    running = run(s, status, (job(1, ready=1),), (pod(1),), (workload(1, admitted=True),))
    assert running.status["usage"]["gpuHours"] == {"spot": 0.0, "onDemand": round(1 / 3, 6)}
    done = dataclasses.replace(job(1), complete=True, finished_at="2026-01-01T11:59:00Z")
    plan = run(s, running.status, (done,), (stopped(1),))
    assert plan.status["phase"] == "Succeeded"
    assert plan.status["usage"]["gpuHours"] == {"spot": 0.0, "onDemand": 0.3}
    on_spot = dataclasses.replace(done, capacity="spot")
    plan = run(s, running.status, (on_spot,), (stopped(1),))
    assert plan.status["usage"]["gpuHours"] == {"spot": 0.3, "onDemand": 0.0}


def test_kueue_requeuing_an_attempt_before_it_ran_is_no_preemption() -> None:
    """Evicted before any worker started (waitForPodsReady timed out, or preempted while its
    pods were pending): queue contention, not spot capacity taken back. The same attempt is
    queued again, counted once."""
    s = spec(spot={"enabled": True, "maxPreemptions": 0})
    status = run(s).status
    timed_out = workload(
        1,
        evicted=True,
        reason="PodsReadyTimeout",
        message="Exceeded the PodsReady timeout ns/job-tj-1-abcde",
    )
    plan = run(s, status, (job(1),), (pod(1, started=None),), (timed_out,))
    assert (plan.status["preemptions"], plan.status["attempt"]) == (0, 1)
    assert plan.status["phase"] == "Queued"
    assert plan.status["activeJob"] == "tj-1"
    assert plan.delete_jobs == ["tj-1"]
    assert (plan.counts, plan.gpu_seconds, plan.create) == ([], 0, [])
    (event,) = plan.events
    assert (event.type, event.reason) == ("Normal", "Requeued")
    assert event.message == (
        "attempt 1 is queued again in LocalQueue team-a: Kueue requeued it before it ran "
        "(PodsReadyTimeout: Exceeded the PodsReady timeout ns/job-tj-1-abcde)"
    )
    # Still seen while it goes: nothing new.
    still = run(s, plan.status, (job(1),), (pod(1, started=None),), (timed_out,))
    assert (still.events, still.status["preemptions"], still.delete_jobs) == ([], 0, ["tj-1"])
    # Gone: the same attempt, queued again (flexible on spot), counted once.
    back = run(s, still.status)
    (created,) = back.create
    assert created["metadata"]["name"] == "tj-1"
    assert created["spec"]["suspend"] is True
    assert "stratus.dev/capacity-type" not in created["metadata"]["labels"]
    assert (back.counts, back.events, back.status["attempt"]) == ([], [], 1)
    assert back.status["phase"] == "Queued"


def test_a_workload_of_an_earlier_job_of_the_same_name_is_not_the_new_ones() -> None:
    raw = raw_workload([{"type": "Evicted", "reason": "PodsReadyTimeout", "message": "m"}])
    raw["metadata"]["ownerReferences"][0]["uid"] = "old"
    lingering = workload_view(raw)
    assert lingering.job_uid == "old"
    status = run(spec()).status
    remade = dataclasses.replace(job(1, suspended=True), uid="new")
    plan = run(spec(), status, (remade,), (), (lingering,))
    assert plan.delete_jobs == []
    assert plan.status["phase"] == "Queued"
    assert plan.status["message"] == (
        "attempt 1 is queued in LocalQueue team-a: waiting for Kueue to make its Workload"
    )


def test_without_kueue_in_the_cluster_a_queue_name_does_not_hold_the_attempt() -> None:
    observed = planner.Observed(
        owner=OWNER,
        generation=1,
        spec=spec(),
        spec_error=None,
        status={},
        jobs=(),
        pods=(),
        now=NOW,
        kueue=False,
    )
    plan = planner.plan(observed, KARPENTER)
    (created,) = plan.create
    assert "suspend" not in created["spec"]
    assert created["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    assert plan.status["phase"] == "Pending"
    assert "KueueNotInstalled" in [e.reason for e in plan.events]
    again = dataclasses.replace(
        observed, status=plan.status, pending_jobs=frozenset({created["metadata"]["name"]})
    )
    assert "KueueNotInstalled" not in [e.reason for e in planner.plan(again, KARPENTER).events]
