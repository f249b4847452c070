"""`stratus cost`: GPU-hours and spend per team, cost center or workload. From the resources'
status.usage (cumulative since each was created; a deleted resource is gone from it), or with
--prometheus over a window, deleted resources included: per team or cost center from the
operator's counters, per workload from its per-workload series (each the workload's status.usage,
so the window's spend is the latest value less the earliest)."""

from __future__ import annotations

import argparse
import json
import re
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from stratus import metrics
from stratus.cli import render
from stratus.cli.render import KINDS, Obj
from stratus.cli.rollout import connect

BY = ("team", "cost-center", "workload")
# What `--prometheus` reads: (the counter, the per-workload gauge) of GPU time and of cost.
SERIES = {
    "gpu_seconds": (metrics.GPU_SECONDS_NAME, metrics.WORKLOAD_GPU_SECONDS),
    "cost": (metrics.COST_NAME, metrics.WORKLOAD_COST),
}
WINDOW_PATTERN = r"^[0-9]{1,5}[smhdwy]$"
# What one Prometheus answer may be: a bounded number of series, each a few hundred bytes.
MAX_BYTES = 4 * 2**20
TIMEOUT = 30.0
NONE = "-"


@dataclass
class Spend:
    """One row: a team, cost center or workload, and what it used."""

    key: tuple[str, ...]
    workloads: int = 0
    spot_hours: float = 0.0
    on_demand_hours: float = 0.0
    cost: float | None = None
    on_demand_cost: float | None = None
    currencies: set[str] = field(default_factory=set)

    def add(
        self, spot: float, on_demand: float, cost: float | None, full: float | None, currency: str
    ) -> None:
        self.workloads += 1
        self.spot_hours += spot
        self.on_demand_hours += on_demand
        if cost is not None:
            self.cost = (self.cost or 0.0) + cost
        if full is not None:
            self.on_demand_cost = (self.on_demand_cost or 0.0) + full
        if currency:
            self.currencies.add(currency)

    @property
    def savings(self) -> float | None:
        if self.cost is None or self.on_demand_cost is None:
            return None
        return self.on_demand_cost - self.cost


def _key(obj: Obj, kind: str, by: str) -> tuple[str, ...]:
    spec, meta = obj.get("spec") or {}, obj.get("metadata") or {}
    if by == "team":
        return (spec.get("team") or NONE,)
    if by == "cost-center":
        return (spec.get("costCenter") or NONE,)
    return (meta.get("namespace") or "", kind, meta.get("name") or "", spec.get("team") or NONE)


def from_status(objs: Iterable[tuple[str, Obj]], by: str) -> list[Spend]:
    """Rows from (kind, resource) pairs, each resource's status.usage; a resource without
    usage (nothing ran yet) counts as a workload with nothing used."""
    rows: dict[tuple[str, ...], Spend] = {}
    for kind, obj in objs:
        usage = (obj.get("status") or {}).get("usage") or {}
        hours = usage.get("gpuHours") or {}
        key = _key(obj, kind, by)
        rows.setdefault(key, Spend(key)).add(
            float(hours.get("spot") or 0),
            float(hours.get("onDemand") or 0),
            usage.get("cost"),
            usage.get("onDemandCost"),
            str(usage.get("currency") or ""),
        )
    return sorted(rows.values(), key=lambda s: (-(s.cost or 0.0), -_hours(s), s.key))


def _hours(spend: Spend) -> float:
    return spend.spot_hours + spend.on_demand_hours


def from_samples(samples: Iterable[tuple[Mapping[str, str], str, float]], by: str) -> list[Spend]:
    """Rows from Prometheus series: (labels, metric, value) of what the window added to GPU
    seconds (as GPU-hours) and cost, by the label `by` (a workload's namespace, kind, name and
    team) and capacity_type."""
    label = by.replace("-", "_")
    rows: dict[tuple[str, ...], Spend] = {}
    for labels, metric, value in samples:
        if by == "workload":
            key = tuple(labels.get(k) or NONE for k in ("namespace", "kind", "name", "team"))
        else:
            key = (labels.get(label) or NONE,)
        row = rows.setdefault(key, Spend(key))
        spot = labels.get("capacity_type") == "spot"
        if metric == "gpu_seconds":
            if spot:
                row.spot_hours += value / 3600
            else:
                row.on_demand_hours += value / 3600
        else:
            row.cost = (row.cost or 0.0) + value
    return sorted(rows.values(), key=lambda s: (-(s.cost or 0.0), -_hours(s), s.key))


def _total(rows: Sequence[Spend]) -> Spend:
    total = Spend(("TOTAL",))
    for row in rows:
        total.workloads += row.workloads
        total.spot_hours += row.spot_hours
        total.on_demand_hours += row.on_demand_hours
        for name in ("cost", "on_demand_cost"):
            value = getattr(row, name)
            if value is not None:
                setattr(total, name, (getattr(total, name) or 0.0) + value)
        total.currencies |= row.currencies
    return total


def _money(value: float | None) -> str:
    return NONE if value is None else f"{value:,.2f}"


def _currency(rows: Sequence[Spend]) -> str:
    found = set().union(*(r.currencies for r in rows)) if rows else set()
    return next(iter(found)) if len(found) == 1 else ("mixed" if found else "")


def table(rows: Sequence[Spend], by: str, namespaces: bool, window: str | None) -> str:
    """The rows, biggest spend first, and a TOTAL line. Money in the price table's currency;
    `-` where there was no price table."""
    currency = _currency(rows)
    money = f" ({currency})" if currency else ""
    if by == "workload":
        headers = (["NAMESPACE"] if namespaces else []) + ["WORKLOAD", "TEAM"]
    else:
        headers = [by.upper()] + ([] if window else ["WORKLOADS"])
    headers += ["SPOT GPU-H", "ON-DEMAND GPU-H", f"COST{money}", "SAVINGS"]
    lines = []
    for row in [*rows, _total(rows)]:
        if by == "workload":
            if row.key == ("TOTAL",):
                cells = ([""] if namespaces else []) + ["TOTAL", ""]
            else:
                namespace, kind, name, team = row.key
                cells = ([namespace] if namespaces else []) + [f"{_short(kind)}/{name}", team]
        else:
            cells = [row.key[0]] + ([] if window else [str(row.workloads)])
        cells += [
            f"{row.spot_hours:.2f}",
            f"{row.on_demand_hours:.2f}",
            _money(row.cost),
            _money(row.savings),
        ]
        lines.append(cells)
    text = render.table(headers, lines)
    span = f"over the last {window}, from the operator's counters" if window else (
        "since each resource was created, from its status"
    )  # fmt: skip
    return text + f"({span})\n"


def _short(kind: str) -> str:
    return "tj" if kind == "TrainingJob" else "infs"


def as_json(rows: Sequence[Spend], by: str, window: str | None) -> dict[str, Any]:
    def item(row: Spend) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if by == "workload" and row.key != ("TOTAL",):
            namespace, kind, name, team = row.key
            out |= {"namespace": namespace, "kind": kind, "name": name, "team": team}
        else:
            out[by.replace("-c", "C")] = row.key[0]
        if not window:
            out["workloads"] = row.workloads
        hours = {"spot": round(row.spot_hours, 6), "onDemand": round(row.on_demand_hours, 6)}
        out["gpuHours"] = hours
        for name, value in (("cost", row.cost), ("onDemandCost", row.on_demand_cost)):
            if value is not None:
                out[name] = round(value, 4)
        if row.savings is not None:
            out["savings"] = round(row.savings, 4)
        return out

    result: dict[str, Any] = {
        "by": by,
        "window": window or "lifetime",
        "source": "prometheus" if window else "status",
        "items": [item(r) for r in rows],
        "total": {k: v for k, v in item(_total(rows)).items() if k != by.replace("-c", "C")},
    }
    if currency := _currency(rows):
        result["currency"] = currency
    return result


def query(url: str, promql: str) -> list[tuple[dict[str, str], float]]:
    """An instant query's series (labels, value); RuntimeError, in one line, when it fails."""
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"--prometheus {url!r}: an http(s) address")
    target = f"{url.rstrip('/')}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    try:
        with urllib.request.urlopen(target, timeout=TIMEOUT) as resp:  # noqa: S310 (checked)
            body = json.loads(resp.read(MAX_BYTES + 1)[:MAX_BYTES])
    except (OSError, ValueError) as exc:
        raise RuntimeError(f"Prometheus at {url}: {exc}") from None
    if body.get("status") != "success":
        raise RuntimeError(f"Prometheus at {url}: {body.get('error') or 'no answer'}")
    return [(dict(r.get("metric") or {}), float(r["value"][1])) for r in body["data"]["result"]]


def promql(metric: str, by: str, window: str, namespace: str | None) -> str:
    """What the window added to `metric` (gpu_seconds or cost): increase() of the operator's
    counter by team or cost center; per workload, each series' latest value less its earliest
    (a workload's series is its cumulative status.usage, the same from any operator replica)."""
    counter, per_workload = SERIES[metric]
    if by != "workload":
        label = by.replace("-", "_")
        return f"sum by ({label}, capacity_type) (increase({counter}_total[{window}]))"
    labels = ", ".join([*metrics.WORKLOAD_LABELS, *(["capacity_type"] if metric != "cost" else [])])
    selector = f'{per_workload}{{namespace="{namespace}"}}' if namespace else per_workload
    return (
        f"max by ({labels}) (max_over_time({selector}[{window}])) - "
        f"min by ({labels}) (min_over_time({selector}[{window}]))"
    )


def cmd_cost(args: argparse.Namespace) -> int:
    window = args.window
    if args.prometheus:
        window = window or "30d"
        if args.namespace and args.by != "workload":
            raise ValueError(
                f"--prometheus sums the whole cluster by {args.by}: -n applies to --by workload"
            )
        if args.namespace and not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", args.namespace):
            raise ValueError(f"-n {args.namespace!r}: not a namespace name")
        if not re.fullmatch(WINDOW_PATTERN, window or ""):
            raise ValueError(f"--window {window!r}: a duration such as 7d, 24h or 30m")
        samples = [
            (labels, metric, value)
            for metric in ("gpu_seconds", "cost")
            for labels, value in query(
                args.prometheus, promql(metric, args.by, window, args.namespace)
            )
        ]
        rows = from_samples(samples, args.by)
    else:
        if window:
            raise ValueError("--window needs --prometheus: the status holds lifetime figures")
        cluster = connect(args)
        objs = [(k.kind, o) for k in KINDS for o in cluster.list_all(k, args.all_namespaces)]
        rows = from_status(objs, args.by)
    if args.output != "text":
        sys.stdout.write(render.dump(as_json(rows, args.by, window), args.output))
    else:
        # Prometheus without -n spans every namespace.
        every = args.all_namespaces or bool(args.prometheus and not args.namespace)
        sys.stdout.write(table(rows, args.by, every, window))
    return 0


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    cost = sub.add_parser(
        "cost",
        parents=[common],
        help="GPU-hours and spend per team, cost center or workload (status.usage, or the "
        "operator's counters in Prometheus over a window)",
    )
    cost.add_argument("--by", choices=BY, default="team", help="default: team")
    cost.add_argument("-A", "--all-namespaces", action="store_true")
    cost.add_argument("-o", "--output", choices=render.OUTPUTS, default="text")
    cost.add_argument(
        "--prometheus",
        default=None,
        metavar="URL",
        help="read the operator's usage series in this Prometheus (increase() of "
        "stratus_gpu_seconds_total and stratus_cost_total; per workload, stratus_workload_*)",
    )
    cost.add_argument(
        "--window", default=None, help="with --prometheus: how far back, e.g. 7d (default 30d)"
    )
    cost.set_defaults(func=cmd_cost)
