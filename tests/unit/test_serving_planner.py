"""The rollout state machine without a cluster: analysis verdicts, limits, pauses, splits."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
from typing import Any

from stratus.api.inferenceservice import AnalysisMetric, InferenceServiceSpec
from stratus.podspec import Owner
from stratus.serving import planner
from stratus.serving.revision import revision_of
from stratus.serving.views import DeploymentView

NOW = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
OWNER = Owner("InferenceService", "web", "ns", "uid")
ERRORS = AnalysisMetric(name="errors", query="rate(x[1m])", max=0.01)


def spec(image: str = "serve:1", **rollout: Any) -> InferenceServiceSpec:
    return InferenceServiceSpec.model_validate(
        {
            "image": image,
            "model": {"uri": "https://m/x"},
            "replicas": {"min": 10, "max": 10},
            "rollout": {
                "steps": [{"weight": 20, "pause": {"duration": "1m"}}, {"weight": 100}],
                "analysis": {
                    "interval": "30s",
                    "failureLimit": 1,
                    "metrics": [ERRORS.model_dump(by_alias=True, exclude_none=True)],
                },
                **rollout,
            },
        }
    )


def observe(
    s: InferenceServiceSpec,
    status: dict[str, Any],
    ready: dict[str, int],
    now: dt.datetime = NOW,
    **extra: Any,
) -> planner.Observed:
    views = tuple(DeploymentView(f"web-{r}", r, n, n) for r, n in ready.items())
    return planner.Observed(
        owner=OWNER,
        generation=1,
        spec=s,
        status=status,
        annotations=extra.pop("annotations", {}),
        deployments=views,
        staging_failures=(),
        now=now,
        staging_image="img",
        **extra,
    )


def canary_status() -> tuple[InferenceServiceSpec, dict[str, Any], str, str]:
    old, new = spec("serve:1"), spec("serve:2")
    stable = planner.plan(observe(old, {}, {})).status
    status = planner.plan(observe(new, stable, {revision_of(old): 10})).status
    return new, status, revision_of(old), revision_of(new)


def test_a_new_revision_starts_a_canary_split_by_replicas() -> None:
    new, status, stable, canary = canary_status()
    assert (status["canaryRevision"], status["canaryWeight"], status["currentStep"]) == (
        canary,
        20,
        0,
    )
    plan = planner.plan(observe(new, status, {stable: 10}))
    desired = {m["metadata"]["name"]: m["spec"]["replicas"] for m in plan.apply}
    assert desired[f"web-{canary}"] == 2
    assert (f"web-{stable}", 8) in plan.scale


def test_analysis_is_asked_for_when_due_and_judged_against_bounds() -> None:
    new, status, stable, canary = canary_status()
    ready = {stable: 8, canary: 2}
    first = planner.plan(observe(new, status, ready))
    assert first.analyze
    failing = (planner.Measurement(ERRORS, 0.2),)
    once = planner.plan(observe(new, status, ready, analysis=failing)).status
    assert once["lastAnalysis"]["failures"] == 1
    assert once.get("canaryRevision") == canary  # failureLimit 1 tolerates one
    later = NOW + dt.timedelta(seconds=31)
    twice = planner.plan(observe(new, once, ready, now=later, analysis=failing))
    assert twice.status["phase"] == "Degraded"
    assert twice.status["abortedRevision"] == canary
    assert twice.outcomes == ["aborted"]
    assert "errors = 0.2 (must be <= 0.01)" in twice.events[-1].message


def test_a_value_json_cannot_carry_is_left_out_of_the_status() -> None:
    new, status, stable, canary = canary_status()
    infinite = (planner.Measurement(ERRORS, math.inf),)
    plan = planner.plan(observe(new, status, {stable: 8, canary: 2}, analysis=infinite))
    (result,) = plan.status["lastAnalysis"]["results"]
    assert result == {"name": ERRORS.name, "verdict": "Failed"}
    json.dumps(plan.status, allow_nan=False)  # what the API server accepts


def test_inconclusive_results_pause_for_a_person() -> None:
    new, status, stable, canary = canary_status()
    empty = (planner.Measurement(ERRORS, None, "no data"),)
    plan = planner.plan(observe(new, status, {stable: 8, canary: 2}, analysis=empty))
    assert plan.status["phase"] == "Paused"
    assert plan.events[-1].reason == "AnalysisInconclusive"


def test_steps_advance_after_their_pause_and_a_passing_measurement() -> None:
    new, status, stable, canary = canary_status()
    ready = {stable: 8, canary: 2}
    passing = (planner.Measurement(ERRORS, 0.001),)
    measured = planner.plan(observe(new, status, ready, analysis=passing))
    assert measured.status["currentStep"] == 0  # the one-minute pause is not over
    assert measured.requeue_after is not None
    later = NOW + dt.timedelta(minutes=1, seconds=1)
    advanced = planner.plan(observe(new, measured.status, ready, now=later))
    assert (advanced.status["currentStep"], advanced.status["canaryWeight"]) == (1, 100)


def test_promote_full_and_retire_the_old_stable() -> None:
    new, status, stable, canary = canary_status()
    plan = planner.plan(
        observe(new, status, {stable: 8, canary: 2}, annotations={"stratus.dev/promote-full": "1"})
    )
    assert plan.status["stableRevision"] == canary
    assert plan.status["retiringRevision"] == stable
    assert plan.outcomes == ["promoted"]
    later = NOW + dt.timedelta(seconds=31)
    retired = planner.plan(observe(new, plan.status, {stable: 8, canary: 10}, now=later))
    assert retired.delete == [f"web-{stable}"]
    # The same annotation value is not acted on twice.
    again = planner.plan(
        dataclasses.replace(
            observe(new, retired.status, {canary: 10}),
            annotations={"stratus.dev/promote-full": "1"},
        )
    )
    assert again.outcomes == []
