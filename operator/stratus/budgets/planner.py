"""A Budget's next status, pure: its spec, its last status, the workloads seen and the time in;
the status (window, usage, remaining, top consumers, ledger, conditions) and Events out.

Edges: SoftLimitReached turns True at softThreshold percent of the limit, LimitReached at 100%;
each posts one Warning Event when it turns True, so once per window unless the limit is changed
within it. A changed limit counts at once (the gate reads the spec, not this status); a new
window starts with conditions False again."""

from __future__ import annotations

import copy
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from stratus.api.budget import MAX_LEDGER_ENTRIES, BudgetSpec
from stratus.budgets import ledger as ledger_module
from stratus.budgets.ledger import Amounts, WorkloadUsage
from stratus.budgets.window import period_at, window_at
from stratus.conditions import Event, set_condition, timestamp

Status = dict[str, Any]

SOFT = "SoftLimitReached"
LIMIT = "LimitReached"
READY = "Ready"
FULL = ledger_module.LEDGER_FULL
# Event reasons.
SOFT_EVENT = "BudgetSoftLimit"
LIMIT_EVENT = "BudgetExhausted"


@dataclass
class Plan:
    status: Status
    events: list[Event] = field(default_factory=list)
    # Seconds until the window rolls over (the next pass that must run).
    requeue_after: float | None = None


def parse_spec(raw: Any) -> tuple[BudgetSpec | None, str | None]:
    try:
        return BudgetSpec.model_validate(raw or {}), None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        message = str(first["msg"]).removeprefix("Value error, ")
        return None, f"spec.{where}: {message}" if where else f"spec: {message}"


def unit(spec: BudgetSpec, currency: str | None) -> str:
    return "GPU-hours" if spec.limit.gpu_hours is not None else (currency or "(currency)")


def limit_of(spec: BudgetSpec) -> float:
    return spec.limit.amount if spec.limit.amount is not None else spec.limit.gpu_hours or 0.0


def plan(
    raw_spec: Any, status: Status, generation: int, workloads: list[WorkloadUsage], now: dt.datetime
) -> Plan:
    out = copy.deepcopy(status)
    out["observedGeneration"] = generation
    spec, error = parse_spec(raw_spec)
    if spec is None:
        message = error or "invalid spec"
        set_condition(out, READY, False, "InvalidSpec", message, now, generation)
        return Plan(out)
    window = window_at(spec.window, now)
    period = period_at(spec.window, now)
    ledger = ledger_module.account(status, spec, period, window, workloads, generation)
    used = ledger.window_used()
    limit = limit_of(spec)
    in_unit = used.of(spec.limit)
    ratio = in_unit / limit if limit > 0 else (1.0 if in_unit > 0 else 0.0)
    out.update(ledger.dump())
    out.update(
        {
            "windowStart": timestamp(window.start),
            "windowEnd": timestamp(window.end),
            "used": used.dump(),
            "remaining": round(max(0.0, limit - in_unit), ledger_module.DIGITS),
            "percentUsed": round(100 * ratio, 2),
            "topConsumers": ledger.top_consumers(spec.limit),
        }
    )
    if ledger.currency:
        out["currency"] = ledger.currency
    rolled = status.get("windowStart") != out["windowStart"]
    what = f"{_figure(in_unit)} of {_figure(limit)} {unit(spec, ledger.currency)} used"
    events: list[Event] = []
    soft = ratio * 100 >= spec.soft_threshold
    hard = limit <= 0 or in_unit >= limit
    ends = f"the window rolls over at {out['windowEnd']}"
    for kind, reached, reason, message in (
        (SOFT, soft, SOFT_EVENT, f"{what}, past the soft threshold of {spec.soft_threshold}%"),
        (LIMIT, hard, LIMIT_EVENT, f"{what}: the limit is reached, {_action(spec)}; {ends}"),
    ):
        was = _is_true(out, kind) and not rolled
        state = "Reached" if reached else "Below"
        set_condition(out, kind, reached, state, message if reached else what, now, generation)
        if reached and not was:
            events.append(Event("Warning", reason, message))
    if spec.limit.amount is not None and not ledger.currency and workloads:
        set_condition(
            out,
            READY,
            False,
            "NoPrices",
            "limit.amount needs the operator's price table (chart value cost.prices): "
            "usage has no cost",
            now,
            generation,
        )
    else:
        set_condition(out, READY, True, "Counting", what, now, generation)
    if ledger.folded or any(c.get("type") == FULL for c in out.get("conditions") or []):
        full = (
            f"{ledger.folded} more workloads with usage than the ledger holds "
            f"({MAX_LEDGER_ENTRIES}): the smallest consumers' usage so far is in retired, "
            "and a workload without an entry counts only what it uses after it is next seen"
        )
        state = "Full" if ledger.folded else "Room"
        message = full if ledger.folded else f"{len(ledger.entries)} entries"
        set_condition(out, FULL, bool(ledger.folded), state, message, now, generation)
    return Plan(out, events, requeue_after=window.seconds_left(now) or None)


def _is_true(status: Status, kind: str) -> bool:
    return any(
        c.get("type") == kind and c.get("status") == "True" for c in status.get("conditions") or []
    )


def _action(spec: BudgetSpec) -> str:
    if spec.action == "SpotOnly":
        return "new TrainingJob attempts run on spot capacity only"
    return "new TrainingJob attempts wait"


def _figure(value: float) -> str:
    return f"{value:.4g}"


def figures(status: Status, spec: BudgetSpec) -> tuple[float, float]:
    """(used, limit) in the limit's unit, as a status records them."""
    return Amounts.load(status.get("used")).of(spec.limit), limit_of(spec)
