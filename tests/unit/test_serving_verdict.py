"""The analysis verdict without Prometheus: a value against its bounds, the worst of several
series, and a round of measurements counted against failureLimit and inconclusiveLimit."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pytest

from stratus.api.inferenceservice import Analysis, AnalysisMetric
from stratus.serving.verdict import Measurement, judge, worst

NOW = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
ERRORS = AnalysisMetric(name="errors", query="q", max=0.01)
SUCCESS = AnalysisMetric(name="success", query="q", min=0.99)
LATENCY = AnalysisMetric(name="latency", query="q", min=0.0, max=0.5)


@pytest.mark.parametrize(
    ("metric", "value", "verdict"),
    [
        (ERRORS, 0.01, "Passed"),  # a bound is inclusive
        (ERRORS, 0.0100001, "Failed"),
        (SUCCESS, 0.99, "Passed"),
        (SUCCESS, 0.98, "Failed"),
        (LATENCY, -0.1, "Failed"),
        (LATENCY, 0.6, "Failed"),
        (LATENCY, 0.25, "Passed"),
        (ERRORS, math.inf, "Failed"),
        (SUCCESS, -math.inf, "Failed"),
        (ERRORS, math.nan, "Inconclusive"),
        (ERRORS, None, "Inconclusive"),
    ],
)
def test_a_value_is_judged_against_its_bounds(
    metric: AnalysisMetric, value: float | None, verdict: str
) -> None:
    assert Measurement(metric, value).verdict == verdict


def test_a_measurement_describes_itself_with_its_bounds() -> None:
    assert Measurement(LATENCY, 0.75).describe() == "latency = 0.75 (must be >= 0 and <= 0.5)"
    assert Measurement(SUCCESS, None).describe() == "success = no data (must be >= 0.99)"


@pytest.mark.parametrize(
    ("metric", "values", "chosen"),
    [
        (ERRORS, [0.001, 0.5, 0.002], 0.5),  # one failing series fails the metric
        (SUCCESS, [0.999, 0.5, 1.0], 0.5),
        (ERRORS, [0.001, 0.009], 0.009),  # all pass: the one nearest its bound is reported
        (LATENCY, [0.4, 0.1, -0.2], -0.2),  # furthest outside, on either side
        (LATENCY, [0.45, 0.7, 0.3], 0.7),
        (ERRORS, [math.nan, 0.2], 0.2),  # a NaN series carries no data
    ],
)
def test_several_series_are_judged_on_the_worst(
    metric: AnalysisMetric, values: list[float], chosen: float
) -> None:
    assert worst(metric, values) == Measurement(metric, chosen)


@pytest.mark.parametrize("values", [[], [math.nan], [math.nan, math.nan]])
def test_no_series_with_data_is_inconclusive(values: list[float]) -> None:
    measured = worst(ERRORS, values)
    assert (measured.value, measured.error, measured.verdict) == (None, "no data", "Inconclusive")


def settings(**limits: int) -> Analysis:
    return Analysis.model_validate({"interval": "30s", **limits})


def test_a_round_is_recorded_in_the_status() -> None:
    record: dict[str, Any] = {"failures": 0, "inconclusive": 0}
    measured = (Measurement(ERRORS, 0.001), Measurement(SUCCESS, None, "no data"))
    judge(settings(inconclusiveLimit=1), record, measured, NOW, 2)
    assert record == {
        "time": "2026-01-01T12:00:00.000Z",
        "results": [
            {"name": "errors", "verdict": "Passed", "value": 0.001},
            {"name": "success", "verdict": "Inconclusive"},
        ],
        "failures": 0,
        "inconclusive": 1,
        "stepMeasured": 2,
    }


def test_failed_rounds_roll_back_only_past_the_failure_limit() -> None:
    record: dict[str, Any] = {}
    # Two failing metrics in one round count as one failed round.
    failing = (Measurement(ERRORS, 0.2), Measurement(SUCCESS, 0.5))
    first = judge(settings(failureLimit=1), record, failing, NOW, 0)
    assert (first.verdict, record["failures"]) == ("Passed", 1)
    passing = (Measurement(ERRORS, 0.0), Measurement(SUCCESS, 1.0))
    between = judge(settings(failureLimit=1), record, passing, NOW, 0)
    assert (between.verdict, record["failures"]) == ("Passed", 1)  # failures are not forgiven
    second = judge(settings(failureLimit=1), record, failing, NOW, 0)
    assert second.verdict == "Failed"
    assert second.message == ("errors = 0.2 (must be <= 0.01); success = 0.5 (must be >= 0.99)")


def test_inconclusive_rounds_wait_for_a_person_past_their_limit_naming_why() -> None:
    record: dict[str, Any] = {}
    unclear = (Measurement(ERRORS, None, "no answer within 10 s"), Measurement(SUCCESS, 1.0))
    assert judge(settings(inconclusiveLimit=1), record, unclear, NOW, 0).verdict == "Passed"
    held = judge(settings(inconclusiveLimit=1), record, unclear, NOW, 0)
    assert (held.verdict, record["inconclusive"]) == ("Inconclusive", 2)
    assert held.message == "errors = no data (must be <= 0.01) [no answer within 10 s]"


def test_a_failure_past_its_limit_outweighs_an_inconclusive_one() -> None:
    record: dict[str, Any] = {}
    both = (Measurement(ERRORS, 0.2), Measurement(SUCCESS, None))
    judged = judge(settings(), record, both, NOW, 0)
    assert (judged.verdict, judged.message) == ("Failed", "errors = 0.2 (must be <= 0.01)")
    assert (record["failures"], record["inconclusive"]) == (1, 1)
