"""The TrainingJob state machine, without a cluster."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest

from stratus.api.trainingjob import TrainingJobSpec
from stratus.config import SPOT_PRESETS
from stratus.podspec import Owner
from stratus.training import planner
from stratus.training.views import JobView, PodView

NOW = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
OWNER = Owner("TrainingJob", "tj", "ns", "uid-1")


def spec(**fields: Any) -> TrainingJobSpec:
    return TrainingJobSpec.model_validate({"image": "train:1", **fields})


def job(
    attempt: int, *, complete: bool = False, failed: str = "", reason: str = "", ready: int = 0
) -> JobView:
    return JobView(
        name=f"tj-{attempt}",
        attempt=attempt,
        complete=complete,
        failed=bool(failed or reason),
        failed_reason=reason or "PodFailurePolicy",
        failed_message=failed,
        finished_at="2026-01-01T11:59:00Z",
        started_at="2026-01-01T11:58:00Z",
        active=0,
        ready=ready,
    )


def pod(
    attempt: int,
    name: str = "p",
    *,
    phase: str = "Running",
    deleted: bool = False,
    disrupted: bool = False,
    exit_code: int | None = None,
    message: str | None = None,
    unschedulable: str | None = None,
) -> PodView:
    return PodView(
        name=f"{name}-{attempt}",
        attempt=attempt,
        phase=phase,
        node="n1",
        deleted=deleted,
        disrupted=disrupted,
        unschedulable=unschedulable,
        exit_code=exit_code,
        termination_message=message,
    )


def observe(
    s: TrainingJobSpec,
    status: dict[str, Any] | None = None,
    jobs: tuple[JobView, ...] = (),
    pods: tuple[PodView, ...] = (),
    pending: frozenset[str] = frozenset(),
) -> planner.Observed:
    return planner.Observed(
        owner=OWNER,
        generation=3,
        spec=s,
        spec_error=None,
        status=status or {},
        jobs=jobs,
        pods=pods,
        now=NOW,
        pending_jobs=pending,
    )


def run(
    s: TrainingJobSpec,
    status: dict[str, Any] | None = None,
    jobs: tuple[JobView, ...] = (),
    pods: tuple[PodView, ...] = (),
    pending: frozenset[str] = frozenset(),
) -> planner.Plan:
    return planner.plan(observe(s, status, jobs, pods, pending), SPOT_PRESETS["karpenter"])


def test_a_new_trainingjob_starts_attempt_one_on_spot() -> None:
    plan = run(spec(spot={"enabled": True}))
    assert plan.status["attempt"] == 1
    assert plan.status["phase"] == "Pending"
    assert plan.status["observedGeneration"] == 3
    (created,) = plan.create
    assert created["metadata"]["name"] == "tj-1"
    assert [e.reason for e in plan.events] == ["AttemptStarted"]
    assert plan.counts == ["attempts"]


def test_running_attempt_is_reported_and_nothing_is_created() -> None:
    status = run(spec()).status
    plan = run(spec(), status, (job(1, ready=1),), (pod(1),))
    assert plan.status["phase"] == "Running"
    assert not plan.create
    ready = {c["type"]: c for c in plan.status["conditions"]}["Ready"]
    assert ready["status"] == "True"


def test_a_preempted_attempt_is_counted_once_and_the_next_resumes() -> None:
    s = spec(spot={"enabled": True, "maxPreemptions": 3})
    status = {**run(s).status, "phase": "Running"}
    preempted = job(1, failed="Pod ns/p-1 has condition DisruptionTarget matching FailJob rule")
    report = '{"path": "/ckpt/step-9", "step": 9}'
    dead = pod(1, phase="Failed", deleted=True, disrupted=True, message=report)
    plan = run(s, status, (preempted,), (dead,))
    assert (plan.status["attempt"], plan.status["preemptions"]) == (2, 1)
    assert plan.status["restarts"] == 0
    assert plan.status["lastCheckpoint"]["path"] == "/ckpt/step-9"
    (created,) = plan.create
    variables = {
        e["name"]: e.get("value")
        for e in created["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert variables["STRATUS_RESUME_FROM"] == "/ckpt/step-9"
    assert plan.delete_jobs == ["tj-1"]
    assert [e.reason for e in plan.events] == ["Preempted", "AttemptStarted", "Resumed"]
    # Planned again from the status it wrote: nothing more is counted.
    again = run(s, plan.status, (preempted, job(2)), (dead,))
    assert again.status["preemptions"] == 1
    assert not again.create


def test_a_failed_final_save_is_named_where_the_attempt_ends() -> None:
    s = spec(spot={"enabled": True, "maxPreemptions": 3})
    status = {**run(s).status, "phase": "Running"}
    preempted = job(1, failed="DisruptionTarget")
    report = '{"path": "/ckpt/step-9", "step": 9, "error": "upload timed out\\nafter 25 s"}'
    dead = pod(1, phase="Failed", deleted=True, disrupted=True, message=report)
    plan = run(s, status, (preempted,), (dead,))
    (preempted_event,) = [e for e in plan.events if e.reason == "Preempted"]
    assert preempted_event.message.endswith(
        "; p-1's last save failed (upload timed out after 25 s): "
        "the newest safe one is /ckpt/step-9 (step 9)"
    )
    assert plan.status["lastCheckpoint"]["step"] == 9


def test_the_next_attempt_waits_for_the_last_ones_pods_to_stop() -> None:
    s = spec(spot={"enabled": True}, workers=2)
    status = run(s).status
    preempted = job(1, failed="DisruptionTarget")
    still_saving = pod(1, "b", phase="Running")
    plan = run(s, status, (preempted,), (pod(1, "a", phase="Failed", disrupted=True), still_saving))
    assert plan.status["attempt"] == 2
    assert plan.status["phase"] == "Restarting"
    assert not plan.create


def test_fallback_to_on_demand_after_n_preemptions() -> None:
    s = spec(spot={"enabled": True, "maxPreemptions": 5, "fallbackToOnDemandAfter": 1})
    plan = run(s, {**run(s).status}, (job(1, failed="DisruptionTarget"),))
    terms = plan.create[0]["spec"]["template"]["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]["nodeSelectorTerms"][0]
    assert {"key": "karpenter.sh/capacity-type", "operator": "NotIn", "values": ["spot"]} in terms[
        "matchExpressions"
    ]
    assert "tolerations" in plan.create[0]["spec"]["template"]["spec"]


def test_preemptions_past_the_limit_fail() -> None:
    s = spec(spot={"enabled": True, "maxPreemptions": 1})
    status = {**run(s).status, "attempt": 2, "preemptions": 1}
    plan = run(s, status, (job(2, failed="DisruptionTarget"),))
    assert plan.status["phase"] == "Failed"
    failed = {c["type"]: c for c in plan.status["conditions"]}["Failed"]
    assert failed["reason"] == "PreemptionLimitExceeded"
    assert not plan.create


@pytest.mark.parametrize(("code", "restarts", "phase"), [(75, 0, "Pending"), (3, 1, "Pending")])
def test_retryable_exit_codes_are_not_counted(code: int, restarts: int, phase: str) -> None:
    s = spec(retry={"maxRestarts": 1, "retryableExitCodes": [75]})
    failed = job(1, failed=f"Container train for pod ns/p failed with exit code {code}")
    plan = run(s, run(s).status, (failed,), (pod(1, phase="Failed", exit_code=code),))
    assert plan.status["restarts"] == restarts
    assert plan.status["attempt"] == 2


def test_too_many_restarts_fail_naming_exit_code_and_message() -> None:
    s = spec(retry={"maxRestarts": 0})
    crashed = pod(1, phase="Failed", exit_code=137, message="OOMKilled in step 40")
    plan = run(s, run(s).status, (job(1, reason="BackoffLimitExceeded"),), (crashed,))
    failed = {c["type"]: c for c in plan.status["conditions"]}["Failed"]
    assert failed["reason"] == "RestartLimitExceeded"
    assert "exit code 137: OOMKilled in step 40" in failed["message"]
    assert plan.events[-1].type == "Warning"


def test_success_accumulates_gpu_seconds() -> None:
    s = spec(workers=2, resources={"gpu": 4})
    ran = [
        dataclasses.replace(
            pod(1, name, phase="Succeeded"),
            started_at="2026-01-01T11:58:00Z",
            finished_at="2026-01-01T11:59:00Z",
        )
        for name in ("a", "b")
    ]
    plan = run(s, run(s).status, (job(1, complete=True),), tuple(ran))
    assert plan.status["phase"] == "Succeeded"
    assert plan.status["gpuSeconds"] == 60 * 2 * 4
    assert plan.gpu_seconds == 480


def test_suspend_ends_the_attempt_uncounted() -> None:
    s = spec(suspend=True)
    plan = run(s, run(spec()).status, (job(1, ready=1),), (pod(1),))
    assert plan.delete_jobs == ["tj-1"]
    assert plan.status["phase"] == "Suspended"
    assert (plan.status["attempt"], plan.status["preemptions"], plan.status["restarts"]) == (
        2,
        0,
        0,
    )


def test_unschedulable_pods_surface_the_schedulers_reason() -> None:
    why = "0/8 nodes are available: 8 Insufficient nvidia.com/gpu."
    plan = run(spec(), run(spec()).status, (job(1),), (pod(1, phase="Pending", unschedulable=why),))
    scheduled = {c["type"]: c for c in plan.status["conditions"]}["Scheduled"]
    assert (scheduled["status"], scheduled["reason"], scheduled["message"]) == (
        "False",
        "Unschedulable",
        why,
    )


def test_deadline_fails_across_attempts_and_ttl_deletes_later() -> None:
    s = spec(activeDeadlineSeconds=60, ttlSecondsAfterFinished=30)
    status = {**run(s).status, "startTime": "2026-01-01T11:00:00Z"}
    plan = run(s, status, (job(1, ready=1),))
    assert plan.status["phase"] == "Failed"
    assert plan.delete_jobs == ["tj-1"]
    assert run(s, plan.status).requeue_after == 30
    finished = {**plan.status, "completionTime": "2026-01-01T11:00:00Z"}
    assert run(s, finished).delete_self


def test_conditions_keep_their_transition_time_while_unchanged() -> None:
    status = run(spec(), run(spec()).status, (job(1, ready=1),), (pod(1),)).status
    later = planner.Observed(
        owner=OWNER,
        generation=3,
        spec=spec(),
        spec_error=None,
        status=status,
        jobs=(job(1, ready=1),),
        pods=(pod(1),),
        now=NOW + dt.timedelta(hours=1),
    )
    again = planner.plan(later, SPOT_PRESETS["karpenter"])
    assert again.status == status


def test_an_invalid_spec_is_a_condition_not_a_crash() -> None:
    observed = planner.Observed(
        owner=OWNER,
        generation=1,
        spec=None,
        spec_error="spec.workers: must be >= 1",
        status={},
        jobs=(),
        pods=(),
        now=NOW,
    )
    plan = planner.plan(observed, SPOT_PRESETS["karpenter"])
    ready = plan.status["conditions"][0]
    assert (ready["reason"], ready["status"]) == ("InvalidSpec", "False")
    assert not plan.create


def test_a_job_created_a_moment_ago_is_not_created_again() -> None:
    status = run(spec()).status
    plan = run(spec(), status, pending=frozenset({"tj-1"}))
    assert not plan.create
    assert not plan.events


def test_a_job_whose_status_write_was_lost_is_recorded_not_created_again() -> None:
    plan = run(spec(), {}, pending=frozenset({"tj-1"}))
    assert not plan.create
    assert (plan.status["attempt"], plan.status["activeJob"]) == (1, "tj-1")
    assert [e.reason for e in plan.events] == ["AttemptStarted"]
    assert plan.counts == ["attempts"]


def test_a_recorded_attempt_whose_job_vanished_is_made_again_uncounted() -> None:
    s = spec(spot={"enabled": True})
    # Attempt 2 resumes from a checkpoint; its Job then leaves the cache for good.
    status = {
        **run(s).status,
        "attempt": 2,
        "activeJob": "tj-2",
        "lastCheckpoint": {"path": "/ckpt/step-9", "step": 9},
    }
    plan = run(s, status)
    assert [m["metadata"]["name"] for m in plan.create] == ["tj-2"]
    assert plan.events == []
    assert plan.counts == []
    assert (plan.status["attempt"], plan.status["activeJob"]) == (2, "tj-2")


def test_a_refused_child_is_reported_in_the_ready_condition() -> None:
    status = planner.rejected(
        observe(spec(), {"phase": "Pending"}), "the API server rejected Job tj-1: exceeded quota"
    )
    ready = {c["type"]: c for c in status["conditions"]}["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "CreateFailed")
    assert (
        status["message"] == ready["message"] == "the API server rejected Job tj-1: exceeded quota"
    )
    assert status["phase"] == "Pending"
