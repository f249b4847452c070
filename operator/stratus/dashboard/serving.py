"""An InferenceService's page: its steps with the weights asked for and achieved, and charts of
the weights, the analysis and the validation over time. Pure: objects in, JSON-ready dicts out.

The status holds only the latest figures; the series come from the samples the server's
watches kept (`history`) and from the operator's Events, which say when each weight was asked."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from stratus.conditions import parse_time
from stratus.dashboard import rows

Obj = Mapping[str, Any]

# Chart drawing units: the page scales the SVG's viewBox to its width.
WIDTH = 1000.0
HEIGHT = 180.0
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 56.0, 12.0, 10.0, 24.0
Y_TICKS = 4

_AT_WEIGHT = re.compile(r"at (\d+)%")
# Events after which no canary takes traffic.
_CANARY_ENDS = (
    "Promoted",
    "RolledBack",
    "ProgressDeadlineExceeded",
    "ValidationFailed",
    "CanaryCancelled",
)
VERDICT_CLASS = {"Passed": "passed", "Failed": "failed", "Inconclusive": "inconclusive"}


def steps(obj: Obj) -> list[dict[str, Any]]:
    """The configured steps, with where the canary is and what it achieved."""
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    configured = (spec.get("rollout") or {}).get("steps") or [{"weight": 100}]
    canary = status.get("canaryRevision")
    current = status.get("currentStep") if canary else None
    found = []
    for index, step in enumerate(configured):
        pause = step.get("pause")
        if pause is None:
            hold = "one analysis interval"
        else:
            hold = pause.get("duration") or "until promoted"
        state = "pending"
        if current is not None:
            state = "done" if index < current else "current" if index == current else "pending"
        found.append(
            {
                "index": index,
                "weight": step["weight"],
                "hold": hold,
                "state": state,
                "achieved": status.get("canaryWeightAchieved") if state == "current" else None,
            }
        )
    return found


def weight_points(
    events: Iterable[Obj], samples: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Weights over time: asked for (from Events and samples) and achieved (from samples)."""
    points = [
        {"time": s["time"], "configured": s["configured"], "achieved": s["achieved"]}
        for s in samples
    ]
    for event in events:
        at, reason = rows.event_time(event), event.get("reason")
        if at is None:
            continue
        found = _AT_WEIGHT.search(event.get("message") or "")
        if reason in ("CanaryStarted", "StepAdvanced") and found:
            points.append({"time": at, "configured": int(found.group(1)), "achieved": None})
        elif reason in _CANARY_ENDS:
            points.append({"time": at, "configured": 0, "achieved": None})
    return sorted(points, key=lambda p: p["time"])


def analysis_points(samples: Iterable[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Each metric's measurements over time."""
    series: dict[str, list[dict[str, Any]]] = {}
    for sample in samples:
        at = parse_time(sample["at"])
        if at is None:
            continue
        for result in sample["results"]:
            series.setdefault(result["name"], []).append(
                {"time": at.timestamp(), "value": result.get("value"), "verdict": result["verdict"]}
            )
    return series


def validation_points(samples: Iterable[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Each comparator's agreement beyond the noise floor (else raw agreement) over time."""
    series: dict[str, list[dict[str, Any]]] = {}
    for sample in samples:
        for result in sample["results"]:
            value = result.get("adjusted")
            if value is None:
                value = result.get("agreement")
            name = f"{result['name']} ({result['source']})"
            verdict = {"Pending": "Inconclusive"}.get(result["verdict"], result["verdict"])
            series.setdefault(name, []).append(
                {"time": sample["time"], "value": value, "verdict": verdict}
            )
    return series


def chart(
    title: str,
    series: Mapping[str, Sequence[Mapping[str, Any]]],
    span: tuple[float, float],
    y_range: tuple[float, float] | None = None,
    bounds: Sequence[tuple[float, str]] = (),
    stepped: bool = False,
) -> dict[str, Any]:
    """A line chart's geometry: one path per series, a dot per measurement (its class from its
    verdict), horizontal bound lines and axis ticks. Points without a value are gaps."""
    t0, t1 = span
    t1 = max(t1, t0 + 1.0)
    values = [p["value"] for pts in series.values() for p in pts if p.get("value") is not None]
    values += [b for b, _ in bounds]
    if y_range is None:
        low, high = (min(values), max(values)) if values else (0.0, 1.0)
        if low == high:
            low, high = low - 1.0, high + 1.0
        margin = (high - low) * 0.1
        y_range = (low - margin, high + margin)
    y0, y1 = y_range

    def x(t: float) -> float:
        return round(PAD_LEFT + (WIDTH - PAD_LEFT - PAD_RIGHT) * (t - t0) / (t1 - t0), 2)

    def y(v: float) -> float:
        return round(
            HEIGHT - PAD_BOTTOM - (HEIGHT - PAD_TOP - PAD_BOTTOM) * (v - y0) / (y1 - y0), 2
        )

    drawn = []
    for index, (name, points) in enumerate(series.items()):
        path: list[str] = []
        dots = []
        pen_up = True
        last_y: float | None = None
        for p in points:
            if p.get("value") is None:
                pen_up = True
                continue
            px, py = x(p["time"]), y(float(p["value"]))
            if pen_up:
                path.append(f"M{px},{py}")
            elif stepped and last_y is not None:
                path.append(f"L{px},{last_y}L{px},{py}")
            else:
                path.append(f"L{px},{py}")
            pen_up, last_y = False, py
            if "verdict" in p:
                cls = VERDICT_CLASS.get(p["verdict"], "inconclusive")
                dots.append({"x": px, "y": py, "cls": cls, "value": p["value"], "time": p["time"]})
        if stepped and last_y is not None and not pen_up:
            path.append(f"L{x(t1)},{last_y}")
        drawn.append({"name": name, "index": index, "path": "".join(path), "dots": dots})
    return {
        "title": title,
        "width": WIDTH,
        "height": HEIGHT,
        "series": drawn,
        "bounds": [{"y": y(v), "label": label} for v, label in bounds],
        "yTicks": [
            {"y": y(y0 + (y1 - y0) * i / Y_TICKS), "label": _short(y0 + (y1 - y0) * i / Y_TICKS)}
            for i in range(Y_TICKS + 1)
        ],
        "xTicks": [
            {"x": x(t0 + (t1 - t0) * i / 4), "time": t0 + (t1 - t0) * i / 4} for i in range(5)
        ],
        "empty": not any(s["path"] for s in drawn),
    }


def _short(value: float) -> str:
    return f"{value:.3g}"


def _metric_bounds(spec: Obj, name: str) -> list[tuple[float, str]]:
    metrics = ((spec.get("rollout") or {}).get("analysis") or {}).get("metrics") or []
    metric: Obj = next((m for m in metrics if m.get("name") == name), {})
    return [(float(metric[k]), k) for k in ("min", "max") if metric.get(k) is not None]


def view(
    obj: Obj, events: Iterable[Obj], history: Mapping[str, Sequence[Mapping[str, Any]]], now: float
) -> dict[str, Any]:
    """The InferenceService page's model."""
    events = list(events)
    meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
    weights = weight_points(events, history.get("weights", ()))
    analysis = analysis_points(history.get("analysis", ()))
    validation = validation_points(history.get("validation", ()))
    times = [p["time"] for p in weights]
    times += [p["time"] for pts in (*analysis.values(), *validation.values()) for p in pts]
    start = min(times) if times else now
    span = (start, max([now, *times]))
    charts = [
        chart(
            "Canary traffic (%)",
            {
                "asked": [{"time": p["time"], "value": p["configured"]} for p in weights],
                "achieved": [
                    {"time": p["time"], "value": p["achieved"]}
                    for p in weights
                    if p["achieved"] is not None
                ],
            },
            span,
            (0.0, 100.0),
            stepped=True,
        )
    ]
    charts += [
        chart(f"Analysis: {name}", {name: points}, span, bounds=_metric_bounds(spec, name))
        for name, points in analysis.items()
    ]
    if validation:
        charts.append(chart("Validation: agreement beyond noise", validation, span, (0.0, 1.0)))
    canary = status.get("canaryRevision")
    return {
        "kind": "InferenceService",
        "namespace": meta["namespace"],
        "name": meta["name"],
        "phase": status.get("phase") or "Pending",
        "message": status.get("message"),
        "stableRevision": status.get("stableRevision"),
        "canaryRevision": canary,
        "canaryWeight": status.get("canaryWeight") or 0,
        "canaryWeightAchieved": status.get("canaryWeightAchieved") or 0,
        "abortedRevision": status.get("abortedRevision"),
        "strategy": (spec.get("rollout") or {}).get("strategy") or "Canary",
        "steps": steps(obj),
        "lastAnalysis": status.get("lastAnalysis"),
        "validation": status.get("validation"),
        "conditions": status.get("conditions") or [],
        "actions": {
            "promote": bool(canary),
            "promote-full": bool(canary),
            "abort": bool(canary),
            "retry": bool(status.get("abortedRevision")),
        },
        "charts": charts,
        "events": rows.event_rows(events),
    }
