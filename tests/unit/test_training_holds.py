"""Gates that hold a TrainingJob's next attempt back (a budget, a start window), or send it to
spot only; never stopping a running attempt."""

from __future__ import annotations

import dataclasses

from stratus.config import SPOT_PRESETS
from stratus.training import planner
from tests.unit.test_training_planner import job, observe, pod, spec

HOLD = planner.Hold("BudgetExhausted", "budget team-a is spent", retry_after=30)
SPOT_ONLY = planner.Hold("BudgetSpotOnly", "budget team-a allows spot only", spot_only=True)


def run_held(holds: tuple[planner.Hold, ...], **kw: object) -> planner.Plan:
    obs = dataclasses.replace(observe(spec(), **kw), holds=holds)  # type: ignore[arg-type]
    return planner.plan(obs, SPOT_PRESETS["karpenter"])


def test_a_held_trainingjob_creates_nothing_and_says_why_once() -> None:
    plan = run_held((HOLD,))
    assert plan.create == []
    assert plan.status["phase"] == "Waiting"
    ready = next(c for c in plan.status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "BudgetExhausted")
    assert "budget team-a is spent" in ready["message"]
    assert [e.reason for e in plan.events] == ["BudgetExhausted"]
    assert plan.requeue_after == 30
    # The deadline does not tick while waiting, and nothing was counted.
    assert "startTime" not in plan.status
    assert plan.counts == []
    again = run_held((HOLD,), status=plan.status)
    assert again.events == []


def test_the_attempt_starts_once_the_hold_lifts() -> None:
    held = run_held((HOLD,)).status
    plan = run_held((), status=held)
    (created,) = plan.create
    assert created["metadata"]["name"] == "tj-1"
    assert plan.status["phase"] == "Pending"
    assert "startTime" in plan.status


def test_a_running_attempt_is_never_stopped_by_a_hold() -> None:
    status = run_held(()).status
    plan = run_held((HOLD,), status=status, jobs=(job(1, ready=1),), pods=(pod(1),))
    assert plan.status["phase"] == "Running"
    assert plan.delete_jobs == []


def test_spot_only_sends_an_on_demand_job_to_spot_capacity() -> None:
    plan = run_held((SPOT_ONLY,))
    (created,) = plan.create
    terms = created["spec"]["template"]["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]["nodeSelectorTerms"]
    assert terms[0]["matchExpressions"] == [
        {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["spot"]}
    ]
    assert "BudgetSpotOnly" in [e.reason for e in plan.events]


def test_a_vanished_job_is_not_made_again_while_a_hold_stands() -> None:
    status = run_held(()).status
    assert status["activeJob"] == "tj-1"
    plan = run_held((HOLD,), status=status)
    assert plan.create == []
    assert plan.status["phase"] == "Waiting"
    assert plan.status["activeJob"] == "tj-1"
    back = run_held((), status=plan.status)
    (created,) = back.create
    assert created["metadata"]["name"] == "tj-1"
    assert back.counts == []
    assert [e.reason for e in back.events] == []
