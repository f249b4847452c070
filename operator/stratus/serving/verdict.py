"""The canary analysis verdict, pure: what a metric measured, the worst of a query's series,
and what a round of measurements means for the canary once counted against its limits."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from stratus.api.inferenceservice import Analysis, AnalysisMetric
from stratus.conditions import precise_timestamp

Verdict = Literal["Passed", "Failed", "Inconclusive"]


@dataclass(frozen=True)
class Measurement:
    """One analysis metric's value; None when Prometheus returned nothing or NaN."""

    metric: AnalysisMetric
    value: float | None
    error: str = ""

    @property
    def verdict(self) -> Verdict:
        if self.value is None or math.isnan(self.value):
            return "Inconclusive"
        low, high = self.metric.min, self.metric.max
        if (low is not None and self.value < low) or (high is not None and self.value > high):
            return "Failed"
        return "Passed"

    def describe(self) -> str:
        bounds = []
        if self.metric.min is not None:
            bounds.append(f">= {self.metric.min:g}")
        if self.metric.max is not None:
            bounds.append(f"<= {self.metric.max:g}")
        shown = "no data" if self.value is None else f"{self.value:g}"
        return f"{self.metric.name} = {shown} (must be {' and '.join(bounds)})"


def worst(metric: AnalysisMetric, values: Sequence[float]) -> Measurement:
    """A query that returned several series is judged on every one: the measurement is the
    worst value (the one furthest outside, or nearest the edge of, the metric's bounds), so one
    failing series fails it. NaN series carry no data and are left out; none left is
    inconclusive."""
    judged = [v for v in values if not math.isnan(v)]
    if not judged:
        return Measurement(metric, None, "no data")
    return Measurement(metric, min(judged, key=lambda v: _margin(metric, v)))


def _margin(metric: AnalysisMetric, value: float) -> float:
    """How far inside its bounds a value is; negative outside them."""
    margins = [value - metric.min] if metric.min is not None else []
    if metric.max is not None:
        margins.append(metric.max - value)
    return min(margins, default=math.inf)


@dataclass(frozen=True)
class Judgement:
    """What a round of measurements means: Failed rolls the canary back (failures past
    failureLimit), Inconclusive waits for a person (past inconclusiveLimit), Passed goes on
    (including a failed or inconclusive round still within its limit)."""

    verdict: Verdict
    message: str = ""


def judge(
    settings: Analysis,
    record: dict[str, Any],
    measured: Sequence[Measurement],
    now: dt.datetime,
    step: int,
) -> Judgement:
    """Records a round of measurements taken at `step` in `record` (status.lastAnalysis: the
    results, and the failed and inconclusive rounds so far) and judges it."""
    record["time"] = precise_timestamp(now)
    record["results"] = [
        {
            "name": m.metric.name,
            "verdict": m.verdict,
            # JSON has no NaN or infinity: the API server would refuse the whole status.
            **({"value": m.value} if m.value is not None and math.isfinite(m.value) else {}),
        }
        for m in measured
    ]
    failed = [m for m in measured if m.verdict == "Failed"]
    unclear = [m for m in measured if m.verdict == "Inconclusive"]
    record["failures"] = record.get("failures", 0) + (1 if failed else 0)
    record["inconclusive"] = record.get("inconclusive", 0) + (1 if unclear else 0)
    record["stepMeasured"] = step
    if failed and record["failures"] > settings.failure_limit:
        return Judgement("Failed", "; ".join(m.describe() for m in failed))
    if unclear and record["inconclusive"] > settings.inconclusive_limit:
        return Judgement(
            "Inconclusive",
            "; ".join(m.describe() + (f" [{m.error}]" if m.error else "") for m in unclear),
        )
    return Judgement("Passed")
