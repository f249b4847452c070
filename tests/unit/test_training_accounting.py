"""Accounting that adds up: GPU time counted from when containers run, retryable exits within
their own budget, and a backoff between failed attempts that doubles up to its cap, all in the
status."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest

from stratus.config import SPOT_PRESETS
from stratus.training import planner
from stratus.training.views import PodView, pod_view
from tests.unit.test_training_planner import NOW, job, observe, pod, run, spec

RETRYABLE = "Container train for pod ns/p failed with exit code 75"


def ran(attempt: int, name: str, started: str | None, finished: str | None, **kw: Any) -> PodView:
    """A pod whose containers started running at `started` (None: never) and stopped at
    `finished` (None: still running)."""
    return dataclasses.replace(pod(attempt, name, **kw), started_at=started, finished_at=finished)


def at(seconds: float, obs: planner.Observed) -> planner.Plan:
    """Planned `seconds` after NOW."""
    later = dataclasses.replace(obs, now=NOW + dt.timedelta(seconds=seconds))
    return planner.plan(later, SPOT_PRESETS["karpenter"])


def conditions(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status["conditions"]}


# -- GPU time from when containers run -------------------------------------------------------


def test_gpu_seconds_do_not_count_time_spent_pending() -> None:
    """The Job started at 11:58:00 and ended at 11:59:00, but its workers waited for a node:
    their containers ran 30s and 20s."""
    s = spec(workers=2, resources={"gpu": 4})
    pods = (
        ran(1, "a", "2026-01-01T11:58:30Z", "2026-01-01T11:59:00Z", phase="Succeeded"),
        ran(1, "b", "2026-01-01T11:58:40Z", "2026-01-01T11:59:00Z", phase="Succeeded"),
    )
    plan = run(s, run(s).status, (job(1, complete=True),), pods)
    assert plan.status["gpuSeconds"] == (30 + 20) * 4
    assert plan.gpu_seconds == 200


def test_a_preempted_attempt_that_never_ran_costs_nothing() -> None:
    s = spec(spot={"enabled": True})
    never = ran(1, "a", None, None, phase="Failed", deleted=True, disrupted=True)
    plan = run(s, run(s).status, (job(1, failed="DisruptionTarget"),), (never,))
    assert plan.status["preemptions"] == 1
    assert (plan.status["gpuSeconds"], plan.gpu_seconds) == (0, 0)


def test_a_worker_still_stopping_counts_until_its_attempt_ended() -> None:
    s = spec(workers=2, spot={"enabled": True})
    pods = (
        ran(1, "a", "2026-01-01T11:58:00Z", "2026-01-01T11:58:50Z", phase="Failed", disrupted=True),
        ran(1, "b", "2026-01-01T11:58:00Z", None, phase="Running"),
    )
    plan = run(s, run(s).status, (job(1, failed="DisruptionTarget"),), pods)
    # The Job failed at 11:59:00.
    assert plan.status["gpuSeconds"] == 50 + 60


@pytest.mark.parametrize("ending", ["suspend", "deadline"])
def test_an_attempt_the_operator_ends_is_counted_up_to_now(ending: str) -> None:
    fields: dict[str, Any] = (
        {"suspend": True} if ending == "suspend" else {"activeDeadlineSeconds": 600}
    )
    s = spec(resources={"gpu": 2}, **fields)
    status = {**run(spec()).status, "startTime": "2026-01-01T11:00:00Z"}
    running = ran(1, "a", "2026-01-01T11:59:00Z", None)
    plan = run(s, status, (job(1, ready=1),), (running,))
    assert plan.delete_jobs == ["tj-1"]
    assert plan.status["gpuSeconds"] == 60 * 2
    assert plan.gpu_seconds == 120


def test_container_start_and_stop_times_are_read_from_the_pod() -> None:
    def obj(*states: dict[str, Any]) -> dict[str, Any]:
        return {
            "metadata": {"name": "p", "labels": {"stratus.dev/attempt": "1"}},
            "status": {"phase": "Running", "containerStatuses": [{"state": s} for s in states]},
        }

    waiting = {"waiting": {"reason": "ContainerCreating"}}
    running = {"running": {"startedAt": "2026-01-01T11:58:10Z"}}
    stopped = {
        "terminated": {
            "exitCode": 0,
            "startedAt": "2026-01-01T11:58:05Z",
            "finishedAt": "2026-01-01T11:59:00Z",
        }
    }
    assert (pod_view(obj(waiting)).started_at, pod_view(obj(waiting)).finished_at) == (None, None)
    view = pod_view(obj(running, stopped))
    assert (view.started_at, view.finished_at) == ("2026-01-01T11:58:05Z", None)
    view = pod_view(obj(stopped))
    assert (view.started_at, view.finished_at) == (
        "2026-01-01T11:58:05Z",
        "2026-01-01T11:59:00Z",
    )


# -- a budget for retryable exits --------------------------------------------------------------


def test_retryable_exits_count_against_their_own_limit() -> None:
    s = spec(retry={"maxRestarts": 0, "retryableExitCodes": [75], "maxRetryableRestarts": 1})
    exited = pod(1, phase="Failed", exit_code=75)
    first = run(s, run(s).status, (job(1, failed=RETRYABLE),), (exited,))
    assert (first.status["retryableRestarts"], first.status["restarts"]) == (1, 0)
    assert first.status["attempt"] == 2
    assert first.counts == ["retryable_restarts"]
    assert "retryable restart 1 of 1" in first.events[0].message
    second = run(
        s,
        {**first.status, "nextAttemptAt": None},
        (job(2, failed=RETRYABLE),),
        (pod(2, phase="Failed", exit_code=75),),
    )
    assert second.status["phase"] == "Failed"
    failed = conditions(second.status)["Failed"]
    assert failed["reason"] == "RetryableRestartLimitExceeded"
    assert "more than maxRetryableRestarts (1)" in failed["message"]
    assert second.status["retryableRestarts"] == 2


# -- backoff between failed attempts -----------------------------------------------------------


@pytest.mark.parametrize("code", [3, 75])
def test_the_attempt_after_a_failed_one_waits_out_the_backoff(code: int) -> None:
    s = spec(retry={"maxRestarts": 5, "retryableExitCodes": [75]})
    failed = job(1, failed=f"Container train for pod ns/p failed with exit code {code}")
    crashed = pod(1, phase="Failed", exit_code=code)
    plan = run(s, run(s).status, (failed,), (crashed,))
    assert plan.status["attempt"] == 2
    assert plan.status["nextAttemptAt"] == "2026-01-01T12:00:10Z"
    assert not plan.create
    assert plan.requeue_after == 10
    assert plan.status["phase"] == "Restarting"
    ready = conditions(plan.status)["Ready"]
    assert (ready["reason"], ready["message"]) == (
        "BackingOff",
        "attempt 2 starts at 2026-01-01T12:00:10Z, after a backoff",
    )
    assert "attempt 2 starts in 10s" in plan.events[0].message
    # Planned again before it is due: still waiting, nothing new to say.
    waiting = at(4, observe(s, plan.status, (failed,), (crashed,)))
    assert not waiting.create
    assert not waiting.events
    assert waiting.requeue_after == 6
    assert waiting.status == plan.status
    # Due: the attempt starts, and the status no longer names a time.
    due = at(10, observe(s, plan.status, (failed,), (crashed,)))
    assert [m["metadata"]["name"] for m in due.create] == ["tj-2"]
    assert "nextAttemptAt" not in due.status
    assert conditions(due.status)["Ready"]["reason"] == "AttemptPending"


@pytest.mark.parametrize(
    ("retry", "restarts", "retryable", "delay"),
    [
        ({}, 0, 0, 10),
        ({}, 1, 0, 20),
        ({}, 1, 1, 40),
        ({}, 4, 0, 160),
        ({}, 5, 0, 300),
        ({}, 900, 0, 300),
        ({"backoffSeconds": 1, "maxBackoffSeconds": 3}, 0, 3, 3),
        ({"backoffSeconds": 0}, 2, 0, 0),
    ],
)
def test_the_backoff_doubles_with_each_failure_up_to_its_cap(
    retry: dict[str, Any], restarts: int, retryable: int, delay: int
) -> None:
    s = spec(retry={"maxRestarts": 1000, **retry})
    status = {
        **run(s).status,
        "restarts": restarts,
        "retryableRestarts": retryable,
    }
    failed = job(1, failed="Container train for pod ns/p failed with exit code 3")
    plan = run(s, status, (failed,), (pod(1, phase="Failed", exit_code=3),))
    assert plan.status["restarts"] == restarts + 1
    if delay:
        expected = NOW + dt.timedelta(seconds=delay)
        assert plan.status["nextAttemptAt"] == expected.strftime("%Y-%m-%dT%H:%M:%SZ")
        assert not plan.create
    else:
        assert "nextAttemptAt" not in plan.status
        assert [m["metadata"]["name"] for m in plan.create] == ["tj-2"]


def test_a_preemption_does_not_back_off() -> None:
    s = spec(spot={"enabled": True})
    plan = run(s, run(s).status, (job(1, failed="DisruptionTarget"),))
    assert "nextAttemptAt" not in plan.status
    assert [m["metadata"]["name"] for m in plan.create] == ["tj-2"]


def test_suspending_or_failing_during_the_backoff_forgets_it() -> None:
    s = spec(retry={"maxRestarts": 5}, activeDeadlineSeconds=600)
    status = {**run(s).status, "startTime": "2026-01-01T11:55:00Z"}
    failed = job(1, failed="Container train for pod ns/p failed with exit code 3")
    crashed = pod(1, phase="Failed", exit_code=3)
    backing_off = run(s, status, (failed,), (crashed,)).status
    assert "nextAttemptAt" in backing_off
    suspended = run(spec(suspend=True), backing_off, (failed,), (crashed,))
    assert suspended.status["phase"] == "Suspended"
    assert "nextAttemptAt" not in suspended.status
    past_deadline = at(300, observe(s, backing_off, (failed,), (crashed,)))
    assert past_deadline.status["phase"] == "Failed"
    assert "nextAttemptAt" not in past_deadline.status


DEADLINE = "DeadlineExceeded"


def test_an_attempt_its_own_deadline_failed_is_counted_once() -> None:
    """The Job carried the deadline's remaining seconds and failed by itself at 11:59:00; the
    TrainingJob's deadline passes before the planner steps: its GPU time still counts, once."""
    s = spec(resources={"gpu": 2}, activeDeadlineSeconds=600)
    status = {**run(spec()).status, "startTime": "2026-01-01T11:50:00Z"}
    ended = job(1, failed="Job was active longer than specified deadline", reason=DEADLINE)
    stopped = ran(1, "a", "2026-01-01T11:55:00Z", "2026-01-01T11:59:00Z", phase="Failed")
    plan = run(s, status, (ended,), (stopped,))
    assert plan.status["phase"] == "Failed"
    assert conditions(plan.status)["Failed"]["reason"] == "DeadlineExceeded"
    assert (plan.status["gpuSeconds"], plan.gpu_seconds) == (240 * 2, 240 * 2)
    assert plan.status["usage"]["gpuHours"]["onDemand"] == round(480 / 3600, 6)
    assert plan.delete_jobs == []
    again = run(s, plan.status, (ended,), (stopped,))
    assert (again.status["gpuSeconds"], again.gpu_seconds) == (480, 0)


@pytest.mark.parametrize("failed", ["", "Container train for pod ns/p failed with exit code 1"])
def test_the_last_attempt_is_counted_once_when_the_trainingjob_finishes(failed: str) -> None:
    s = spec(resources={"gpu": 2}, retry={"maxRestarts": 0})
    ended = job(1, complete=not failed, failed=failed)
    stopped = ran(1, "a", "2026-01-01T11:58:00Z", "2026-01-01T11:59:00Z", phase="Failed")
    plan = run(s, run(s).status, (ended,), (stopped,))
    assert plan.status["phase"] == ("Failed" if failed else "Succeeded")
    assert (plan.status["gpuSeconds"], plan.gpu_seconds) == (120, 120)
