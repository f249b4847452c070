"""The usage ledger a Budget keeps in its own status. Workloads report cumulative usage
(status.usage, since their creation); the ledger remembers each covered workload's figure at the
start of the accounting period (`base`) and when last seen (`last`), so usage in the period is
the sum of last - base, plus `retired`: what workloads deleted (or no longer covered) during the
period had used in it. Nothing is lost: a workload's growth between two passes always lands in
one period (at a rollover, the later one), and a deleted one's share stays in `retired`.

Bound: an entry only for a covered workload that used GPUs in the period, or whose figure is
above zero and can still move (not finished, or finished within the period); a workload with
nothing to carry has none, and its base is known again when it next shows usage: 0 while the
ledger was kept continuously (it had used nothing when last seen, or was created since), its
figure otherwise (a new Budget, a changed spec, a full ledger: what it used before cannot be
placed). At most MAX_LEDGER_ENTRIES entries: past that the smallest consumers fold into
`retired` and condition LedgerFull says so. For a RollingDays window, one history row per
earlier day of the window (at most 365)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from stratus.api.budget import MAX_LEDGER_ENTRIES, TOP_CONSUMERS, BudgetLimit, BudgetSpec
from stratus.budgets.window import Window
from stratus.conditions import parse_time, timestamp

Status = dict[str, Any]
# Figures are rounded in status so that a pass that changes nothing writes nothing.
DIGITS = 6
# The condition a full ledger sets: while True, workloads without an entry start from their
# figure when next seen (never counted twice, but their growth before that is not counted).
LEDGER_FULL = "LedgerFull"


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
    finished_at: dt.datetime | None = None


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
        finished_at=parse_time(status.get("completionTime")),
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
    # Entries folded into `retired` because the ledger was full.
    folded: int = 0

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


def _used(entry: Status) -> Amounts:
    return Amounts.load(entry["last"]) - Amounts.load(entry["base"])


def _finished_before(w: WorkloadUsage, start: dt.datetime) -> bool:
    # Finished without a completion time: taken as long finished (its figure cannot move).
    return w.finished and (w.finished_at is None or w.finished_at < start)


def is_full(status: Status) -> bool:
    return any(
        c.get("type") == LEDGER_FULL and c.get("status") == "True"
        for c in status.get("conditions") or []
    )


def _first_base(
    w: WorkloadUsage, period: Window, last_period: dt.datetime | None, full: bool
) -> Amounts:
    """The base of a workload without an entry; `last_period` is the last pass's period when
    that pass saw every covered workload and kept an entry for each with usage to carry."""
    if not full and w.created is not None and w.created >= period.start:
        return Amounts()
    if last_period is not None and not _finished_before(w, last_period):
        # Seen by the last pass with nothing used: all it used since is this period's.
        return Amounts()
    # Created before the period and first seen now (a new Budget, a workload newly covered, one
    # folded out of a full ledger): what it used before now cannot be placed in this period.
    return w.usage


def _fold(ledger: Ledger, limit: BudgetLimit) -> None:
    """Keep the largest consumers within the bound; the rest's usage so far moves to retired."""
    if len(ledger.entries) <= MAX_LEDGER_ENTRIES:
        return
    ranked = sorted(ledger.entries, key=lambda e: (-_used(e).of(limit), e["uid"]))
    for entry in ranked[MAX_LEDGER_ENTRIES:]:
        ledger.retired = ledger.retired + _used(entry)
    ledger.entries = ranked[:MAX_LEDGER_ENTRIES]
    ledger.folded = len(ranked) - MAX_LEDGER_ENTRIES


def account(
    status: Status,
    spec: BudgetSpec,
    period: Window,
    window: Window,
    workloads: list[WorkloadUsage],
    generation: int,
) -> Ledger:
    """The ledger for `period` from the last one in `status` and the workloads seen now."""
    previous = {str(e.get("uid")): e for e in status.get("ledger") or [] if e.get("uid")}
    retired = Amounts.load(status.get("retired"))
    history = list(status.get("history") or [])
    last_period = parse_time(status.get("periodStart"))
    full = is_full(status)
    # The last pass saw every covered workload and gave an entry to each with usage to carry:
    # one without an entry had used nothing then (or finished before that period, or did not
    # exist yet). A changed spec may cover workloads the last pass did not look at.
    continuous = not full and status.get("observedGeneration") == generation
    rolled = last_period != period.start
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
        base = (
            Amounts.load(known.get("base"))
            if known is not None
            else _first_base(w, period, last_period if continuous else None, full)
        )
        used = w.usage - base
        moved = used.gpu_hours or used.amount
        if not moved and (
            not (w.usage.gpu_hours or w.usage.amount) or _finished_before(w, period.start)
        ):
            continue
        ledger.entries.append(_entry(w, base))
    for uid, entry in previous.items():
        if uid not in seen:
            ledger.retired = ledger.retired + _used(entry)
    _fold(ledger, spec.limit)
    ledger.entries.sort(key=lambda e: (e["namespace"], e["kind"], e["name"], e["uid"]))
    return ledger
