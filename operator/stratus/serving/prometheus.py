"""Canary analysis queries against Prometheus's HTTP API (instant queries)."""

from __future__ import annotations

import json
import math
import urllib.parse
import urllib.request

from stratus.api.inferenceservice import AnalysisMetric
from stratus.serving.planner import Measurement


def render(query: str, variables: dict[str, str]) -> str:
    for key, value in variables.items():
        query = query.replace("{{" + key + "}}", value)
    return query


def measure(
    address: str, metric: AnalysisMetric, variables: dict[str, str], timeout: float = 10.0
) -> Measurement:
    """One instant query; empty results, NaN and errors are inconclusive, never a failure."""
    url = f"{address.rstrip('/')}/api/v1/query?" + urllib.parse.urlencode(
        {"query": render(metric.query, variables)}
    )
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - operator's own setting
            body = json.load(resp)
    except (OSError, ValueError) as exc:
        return Measurement(metric, None, f"query failed: {exc}")
    if body.get("status") != "success":
        return Measurement(metric, None, f"query failed: {body.get('error', 'unknown error')}")
    data = body.get("data", {})
    result = data.get("result")
    if data.get("resultType") == "scalar":
        result = [{"value": result}]
    if not result:
        return Measurement(metric, None, "no data")
    try:
        value = float(result[0]["value"][1])
    except (KeyError, IndexError, TypeError, ValueError):
        return Measurement(metric, None, "unexpected result shape")
    return Measurement(metric, None if math.isnan(value) else value)
