"""The InferenceService page: steps, weights over time, and the charts' geometry."""

from __future__ import annotations

from typing import Any

from stratus.dashboard import serving
from stratus.dashboard.history import History
from tests.unit.dashboard.data import canary_status, epoch, event, service


def test_steps_show_where_the_canary_is_and_what_it_achieved() -> None:
    found = serving.steps(service(**canary_status(1, 50, 30, 0, 0.01)))
    assert [(s["weight"], s["state"], s["achieved"]) for s in found] == [
        (10, "done", None),
        (50, "current", 30),
        (100, "pending", None),
    ]
    assert [s["hold"] for s in found] == ["1m", "until promoted", "one analysis interval"]


def test_without_a_canary_no_step_is_current_and_no_steps_mean_one_of_100() -> None:
    assert {s["state"] for s in serving.steps(service(phase="Healthy"))} == {"pending"}
    bare = service()
    del bare["spec"]["rollout"]["steps"]
    assert [s["weight"] for s in serving.steps(bare)] == [100]


def test_weights_over_time_merge_events_and_samples() -> None:
    svc = service()
    events = [
        event(svc, 10, "CanaryStarted", "revision b is a canary at 10% (stable a)"),
        event(svc, 70, "StepAdvanced", "canary b at 50% (step 2 of 3)"),
        event(svc, 200, "Promoted", "revision b promoted to stable"),
        event(svc, 5, "Deployed", "revision a deployed as stable"),
    ]
    samples = [{"time": epoch(75), "revision": "b", "configured": 50, "achieved": 25}]
    points = serving.weight_points(events, samples)
    assert [(p["time"] - epoch(0), p["configured"], p["achieved"]) for p in points] == [
        (10, 10, None),
        (70, 50, None),
        (75, 50, 25),
        (200, 0, None),
    ]


def test_a_stepped_chart_holds_each_value_until_the_next() -> None:
    drawn = serving.chart(
        "w",
        {"asked": [{"time": 0.0, "value": 0}, {"time": 50.0, "value": 50}]},
        (0.0, 100.0),
        (0.0, 100.0),
        stepped=True,
    )
    (series,) = drawn["series"]
    # x: 56 + 932 * t/100; y: 156 - 146 * v/100.
    assert series["path"] == "M56.0,156.0L522.0,156.0L522.0,83.0L988.0,83.0"
    assert drawn["yTicks"][0] == {"y": 156.0, "label": "0"}
    assert drawn["yTicks"][-1] == {"y": 10.0, "label": "100"}
    assert drawn["empty"] is False


def test_a_chart_leaves_gaps_for_missing_values_and_colours_dots_by_verdict() -> None:
    points: list[dict[str, Any]] = [
        {"time": 0.0, "value": 1.0, "verdict": "Passed"},
        {"time": 10.0, "value": None, "verdict": "Inconclusive"},
        {"time": 20.0, "value": 3.0, "verdict": "Failed"},
    ]
    drawn = serving.chart("m", {"m": points}, (0.0, 20.0), bounds=[(2.5, "max")])
    (series,) = drawn["series"]
    assert series["path"].count("M") == 2
    assert "L" not in series["path"]
    assert [d["cls"] for d in series["dots"]] == ["passed", "failed"]
    (bound,) = drawn["bounds"]
    assert bound["label"] == "max"
    assert series["dots"][1]["y"] < bound["y"] < series["dots"][0]["y"]


def test_a_chart_without_measurements_is_empty() -> None:
    drawn = serving.chart("m", {"m": []}, (0.0, 1.0))
    assert drawn["empty"] is True


def test_view_draws_weights_analysis_and_validation_from_the_history() -> None:
    history = History()
    svc = service()
    for index, (weight, achieved, rate) in enumerate([(10, 10, 0.01), (50, 25, 0.02)]):
        obj = {**svc, "status": canary_status(index, weight, achieved, 60 * index, rate)}
        history.observe(obj, epoch(60 * index))
    current = {**svc, "status": canary_status(1, 50, 25, 60, 0.02)}
    found = serving.view(
        current, [], history.get(("InferenceService", "serving", "web")), epoch(120)
    )
    titles = [c["title"] for c in found["charts"]]
    assert titles == [
        "Canary traffic (%)",
        "Analysis: error-rate",
        "Validation: agreement beyond noise",
    ]
    traffic, analysis, validation = found["charts"]
    assert all(s["path"] for s in traffic["series"])
    assert len(analysis["series"][0]["dots"]) == 2
    assert [b["label"] for b in analysis["bounds"]] == ["max"]
    # The validation figures did not change between the versions: one sample.
    assert len(validation["series"][0]["dots"]) == 1
    assert found["actions"] == {
        "promote": True,
        "promote-full": True,
        "abort": True,
        "retry": False,
    }
    assert (found["canaryWeight"], found["canaryWeightAchieved"]) == (50, 25)


def test_retry_is_offered_once_a_revision_was_rolled_back() -> None:
    found = serving.view(
        service(phase="Degraded", abortedRevision="bbb222", canaryWeight=0), [], {}, epoch(0)
    )
    assert found["actions"] == {
        "promote": False,
        "promote-full": False,
        "abort": False,
        "retry": True,
    }
