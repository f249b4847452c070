"""Rows of the list page and of the Events tables. Pure: objects in, JSON-ready dicts out."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from stratus.conditions import parse_time
from stratus.podspec import TEAM_LABEL

Obj = Mapping[str, Any]

KINDS = ("TrainingJob", "InferenceService")


def hours(seconds: Any) -> float | None:
    return round(float(seconds) / 3600, 3) if isinstance(seconds, int | float) else None


def usage(status: Obj) -> dict[str, Any]:
    """GPU-hours (status.usage, the running attempt or live pods included; an older status's
    gpuSeconds otherwise) and what they cost, where the admin set prices."""
    metered = status.get("usage") or {}
    split = metered.get("gpuHours") or {}
    if split:
        total: float | None = round(
            float(split.get("spot") or 0) + float(split.get("onDemand") or 0), 3
        )
    else:
        total = hours(status.get("gpuSeconds"))
    cost = metered.get("cost")
    return {
        "gpuHours": total,
        "cost": round(float(cost), 2) if isinstance(cost, int | float) else None,
        "currency": metered.get("currency"),
        "savings": metered.get("savings"),
    }


def resource_row(obj: Obj) -> dict[str, Any]:
    """One line of the list page: what the status says, and nothing it does not."""
    meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
    kind = obj["kind"]
    row: dict[str, Any] = {
        "kind": kind,
        "namespace": meta["namespace"],
        "name": meta["name"],
        "phase": status.get("phase") or "Pending",
        "team": spec.get("team") or (meta.get("labels") or {}).get(TEAM_LABEL),
        "created": _epoch(meta.get("creationTimestamp")),
        "message": status.get("message"),
        **usage(status),
    }
    if kind == "TrainingJob":
        row["detail"] = (
            f"attempt {status.get('attempt') or 0}, {status.get('preemptions') or 0} preempted"
        )
    else:
        canary = status.get("canaryRevision")
        row["detail"] = (
            f"canary {canary} at {status.get('canaryWeightAchieved') or 0}% "
            f"of {status.get('canaryWeight') or 0}%"
            if canary
            else f"stable {status.get('stableRevision') or '-'}"
        )
    return row


def matches(row: Mapping[str, Any], query: Mapping[str, str]) -> bool:
    """The list page's filters: name (substring), namespace, kind and phase (exact)."""
    name = query.get("name", "").strip().lower()
    if name and name not in row["name"].lower():
        return False
    return all(
        not query.get(key) or row[key] == query[key] for key in ("namespace", "kind", "phase")
    )


def event_time(event: Obj) -> float | None:
    for key in ("lastTimestamp", "eventTime", "firstTimestamp"):
        value = event.get(key)
        if value:
            return _epoch(value)
    return _epoch((event.get("metadata") or {}).get("creationTimestamp"))


def event_rows(events: Iterable[Obj]) -> list[dict[str, Any]]:
    """Events newest first, as the tables show them."""
    found = [
        {
            "time": event_time(e),
            "type": e.get("type"),
            "reason": e.get("reason"),
            "message": e.get("message"),
            "source": (e.get("source") or {}).get("component") or e.get("reportingComponent"),
        }
        for e in events
    ]
    return sorted(found, key=lambda r: r["time"] or 0.0, reverse=True)


def _epoch(value: str | None) -> float | None:
    at = parse_time(value)
    return at.timestamp() if at else None
