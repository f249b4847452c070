"""The usage ledger a Budget keeps in its own status. Workloads report cumulative usage
(status.usage, since their creation); the ledger remembers each covered workload's figure at the
start of the accounting period (`base`) and when last seen (`last`), so usage in the period is
the sum of last - base, plus `retired`: what workloads deleted (or no longer covered) during the
period had used in it. Nothing is lost: a workload's growth between two passes always lands in
one period (at a rollover, the later one), and a deleted one's share stays in `retired`.

Bound: one entry per covered workload that exists and has not finished, or finished with usage
in the period (a finished one with none needs no entry: its figure no longer moves), and for a
RollingDays window one history row per earlier day of the window (at most 365)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from stratus.api.budget import TOP_CONSUMERS, BudgetLimit, BudgetSpec
from stratus.budgets.window import Window
from stratus.conditions import parse_time, timestamp

Status = dict[str, Any]
# Figures are rounded in status so that a pass that changes nothing writes nothing.
DIGITS = 6


@dataclass(frozen=True)
class Amounts:
    gpu_hours: float = 0.0
    amount: float = 0.0

    def __add__(self, other: Amounts) -> Amounts:
        return Amounts(self.gpu_hours + other.gpu_hours, self.amount + other.amount)

    def __sub__(self, other: Amounts) -> Amounts:
        return Amounts(
            max(0.0, self.gpu_hours - other.gpu_hours), max(0.0, self.amount - other.amount)
        )

    def of(self, limit: BudgetLimit) -> float:
        """The figure in the limit's unit."""
        return self.amount if limit.amount is not None else self.gpu_hours

    def dump(self) -> dict[str, float]:
        return {"gpuHours": round(self.gpu_hours, DIGITS), "amount": round(self.amount, DIGITS)}

    @staticmethod
    def load(raw: Any) -> Amounts:
        raw = raw if isinstance(raw, dict) else {}
        return Amounts(float(raw.get("gpuHours") or 0.0), float(raw.get("amount") or 0.0))


@dataclass(frozen=True)
class WorkloadUsage:
    """A TrainingJob or InferenceService as the ledger needs it."""

    uid: str
    kind: str
    namespace: str
    name: str
    team: str | None
    created: dt.datetime | None
    # Its figure no longer moves (a TrainingJob that Succeeded or Failed).
    finished: bool
    usage: Amounts
    currency: str | None = None


def workload_usage(kind: str, obj: Mapping[str, Any]) -> WorkloadUsage:
    """Read a workload's cumulative usage from its status.usage (the metering's fields)."""
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    usage = status.get("usage") or {}
    hours = usage.get("gpuHours") or {}
    return WorkloadUsage(
        uid=str(meta.get("uid") or ""),
        kind=kind,
        namespace=str(meta.get("namespace") or ""),
        name=str(meta.get("name") or ""),
        team=(obj.get("spec") or {}).get("team"),
        created=parse_time(meta.get("creationTimestamp")),
        finished=status.get("phase") in ("Succeeded", "Failed"),
        usage=Amounts(
            float(hours.get("spot") or 0.0) + float(hours.get("onDemand") or 0.0),
            float(usage.get("cost") or 0.0),
        ),
        currency=usage.get("currency"),
    )


def covers(spec: BudgetSpec, namespace: str, team: str | None) -> bool:
    """Whether a workload counts against the Budget: its namespace or its team is listed."""
    return namespace in spec.namespaces or (team is not None and team in spec.teams)


@dataclass
class Ledger:
    """The ledger after one pass."""

    period_start: dt.datetime
    entries: list[Status] = field(default_factory=list)
    retired: Amounts = Amounts()
    # Earlier periods of a RollingDays window: {start, gpuHours, amount}.
    history: list[Status] = field(default_factory=list)
    currency: str | None = None

    @property
    def period_used(self) -> Amounts:
        total = self.retired
        for entry in self.entries:
            total = total + (Amounts.load(entry["last"]) - Amounts.load(entry["base"]))
        return total

    def window_used(self) -> Amounts:
        total = self.period_used
        for row in self.history:
            total = total + Amounts.load(row)
        return total

    def top_consumers(self, limit: BudgetLimit) -> list[Status]:
        ranked = sorted(
            ((Amounts.load(e["last"]) - Amounts.load(e["base"]), e) for e in self.entries),
            key=lambda pair: (-pair[0].of(limit), pair[1]["namespace"], pair[1]["name"]),
        )
        top = []
        for used, entry in ranked[:TOP_CONSUMERS]:
            if used.of(limit) <= 0:
                break
            consumer: Status = {k: entry[k] for k in ("namespace", "kind", "name") if k in entry}
            if entry.get("team"):
                consumer["team"] = entry["team"]
            top.append({**consumer, **used.dump()})
        return top

    def dump(self) -> Status:
        out: Status = {
            "periodStart": timestamp(self.period_start),
            "ledger": self.entries,
            "retired": self.retired.dump(),
        }
        if self.history:
            out["history"] = self.history
        return out


def _entry(w: WorkloadUsage, base: Amounts) -> Status:
    entry: Status = {
        "uid": w.uid,
        "kind": w.kind,
        "namespace": w.namespace,
        "name": w.name,
        "base": base.dump(),
        "last": w.usage.dump(),
    }
    if w.team:
        entry["team"] = w.team
    return entry


def account(
    status: Status,
    spec: BudgetSpec,
    period: Window,
    window: Window,
    workloads: list[WorkloadUsage],
) -> Ledger:
    """The ledger for `period` from the last one in `status` and the workloads seen now."""
    previous = {str(e.get("uid")): e for e in status.get("ledger") or [] if e.get("uid")}
    retired = Amounts.load(status.get("retired"))
    history = list(status.get("history") or [])
    rolled = parse_time(status.get("periodStart")) != period.start
    if rolled:
        if spec.window.type == "RollingDays" and status.get("periodStart"):
            closed = Ledger(period.start, list(previous.values()), retired).period_used
            if closed.gpu_hours or closed.amount:
                history.append({"start": status["periodStart"], **closed.dump()})
        # The new period starts from what each workload had used when last seen: growth since
        # then lands here, never nowhere.
        previous = {uid: {**e, "base": e.get("last")} for uid, e in previous.items()}
        retired = Amounts()
    ledger = Ledger(period.start, retired=retired)
    ledger.history = [
        row for row in history if (at := parse_time(row.get("start"))) and at >= window.start
    ]
    seen: set[str] = set()
    for w in workloads:
        if not covers(spec, w.namespace, w.team):
            continue
        seen.add(w.uid)
        ledger.currency = ledger.currency or w.currency
        known = previous.get(w.uid)
        if known is not None:
            base = Amounts.load(known.get("base"))
        elif w.created is not None and w.created >= period.start:
            base = Amounts()
        else:
            # Created before the period and first seen now (a new Budget, a workload newly
            # covered): what it used before now cannot be placed in this period.
            base = w.usage
        if w.finished and not (w.usage - base).gpu_hours and not (w.usage - base).amount:
            continue
        ledger.entries.append(_entry(w, base))
    for uid, entry in previous.items():
        if uid not in seen:
            ledger.retired = ledger.retired + (
                Amounts.load(entry.get("last")) - Amounts.load(entry.get("base"))
            )
    ledger.entries.sort(key=lambda e: (e["namespace"], e["kind"], e["name"], e["uid"]))
    return ledger
