"""The training gate, pure: which Budgets cover a TrainingJob, whether one is exhausted (then its
next attempt waits, or runs on spot only), and whether the job's estimated cost fits what is
left (only advice: an estimate is an upper bound, and the job may end long before its deadline,
so it is told at once but not held back).

A Budget is read from its spec (so a raised limit counts at once) and its status (usage in the
current window). A status written for another window (it rolled over, or the spec's window
changed) is not used: the job is not held until the controller has counted the new window."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from stratus.api.budget import BudgetSpec
from stratus.api.trainingjob import TrainingJobSpec
from stratus.budgets.ledger import Amounts, covers
from stratus.budgets.planner import figures, parse_spec, unit
from stratus.budgets.window import window_at
from stratus.conditions import parse_time, timestamp
from stratus.cost.prices import ON_DEMAND, SPOT, PriceTable
from stratus.training.planner import Advice, Hold, Observed

EXHAUSTED = "BudgetExhausted"
SPOT_ONLY = "BudgetSpotOnly"
FITS = "BudgetFits"
# How often a held TrainingJob looks again, for a raised limit (the window's end comes anyway).
RECHECK_SECONDS = 15.0
# Price of one GPU-hour for a TrainingJob's spec (the price table's), or None without prices.
Price = Callable[[TrainingJobSpec], float | None]


@dataclass(frozen=True)
class BudgetState:
    """A Budget as the gate reads it: None figures when its status is not of the current window."""

    name: str
    spec: BudgetSpec
    used: float | None
    limit: float
    window_end: dt.datetime
    currency: str | None

    @property
    def exhausted(self) -> bool:
        return self.used is not None and self.used >= self.limit

    @property
    def left(self) -> float | None:
        return None if self.used is None else max(0.0, self.limit - self.used)


# Budget specs validated, by (uid, generation): a spec edit bumps the generation.
_SPECS: dict[tuple[str, int], BudgetSpec | None] = {}
_SPECS_MAX = 1024


def _spec_of(obj: dict[str, Any]) -> BudgetSpec | None:
    """The Budget's spec, validated once per generation: every TrainingJob pass reads every
    Budget twice (the gate and the fit advice)."""
    meta = obj.get("metadata") or {}
    uid, generation = meta.get("uid"), meta.get("generation")
    if not uid or generation is None:
        return parse_spec(obj.get("spec"))[0]
    key = (str(uid), int(generation))
    if key not in _SPECS:
        if len(_SPECS) >= _SPECS_MAX:
            _SPECS.clear()
        _SPECS[key] = parse_spec(obj.get("spec"))[0]
    return _SPECS[key]


def budget_state(obj: dict[str, Any], now: dt.datetime) -> BudgetState | None:
    spec = _spec_of(obj)
    if spec is None:
        return None
    status = obj.get("status") or {}
    window = window_at(spec.window, now)
    used, limit = figures(status, spec)
    current = parse_time(status.get("windowStart")) == window.start and "used" in status
    return BudgetState(
        name=str((obj.get("metadata") or {}).get("name")),
        spec=spec,
        used=used if current else None,
        limit=limit,
        window_end=window.end,
        currency=status.get("currency"),
    )


def _covering(budgets: Iterable[dict[str, Any]], obs: Observed) -> list[BudgetState]:
    assert obs.spec is not None
    states = (budget_state(b, obs.now) for b in budgets)
    return sorted(
        (s for s in states if s and covers(s.spec, obs.owner.namespace, obs.spec.team)),
        key=lambda s: s.name,
    )


def gate(budgets: Callable[[], Iterable[dict[str, Any]]]) -> Callable[[Observed], Hold | None]:
    """A gate for TrainingController.gates over the Budgets `budgets()` returns."""

    def check(obs: Observed) -> Hold | None:
        if obs.spec is None:
            return None
        exhausted = [s for s in _covering(budgets(), obs) if s.exhausted]
        # Block wins over SpotOnly: waiting is the stricter answer.
        blocking = [s for s in exhausted if s.spec.action == "Block"] or exhausted
        if not blocking:
            return None
        state = blocking[0]
        left = f"limit {state.limit:.4g} {unit(state.spec, state.currency)}, 0 left"
        rolls = f"its window rolls over at {timestamp(state.window_end)}"
        retry = min(RECHECK_SECONDS, max(1.0, (state.window_end - obs.now).total_seconds()))
        if state.spec.action == "SpotOnly":
            message = f"budget {state.name} is exhausted ({left}): spot capacity only; {rolls}"
            return Hold(SPOT_ONLY, message, retry_after=retry, spot_only=True)
        return Hold(EXHAUSTED, f"budget {state.name} is exhausted ({left}); {rolls}", retry)

    return check


def estimate(spec: TrainingJobSpec) -> float | None:
    """The most GPU-hours the whole run can take: every worker's GPUs for activeDeadlineSeconds
    (None without a deadline, or without GPUs)."""
    if spec.active_deadline_seconds is None or spec.resources.gpu == 0:
        return None
    return spec.workers * spec.resources.gpu * spec.active_deadline_seconds / 3600


def priced(table: PriceTable) -> Price:
    """The price of a GPU-hour of a TrainingJob at the admin's table: spot for a spot job that
    never falls back to on-demand, else on-demand (the upper bound); None without a table."""

    def per_hour(spec: TrainingJobSpec) -> float | None:
        price = table.price(spec.resources.gpu_type)
        if price is None:
            return None
        all_spot = spec.spot.enabled and spec.spot.fallback_to_on_demand_after is None
        return price.of(SPOT if all_spot else ON_DEMAND)

    return per_hour


def _own(obs: Observed) -> Amounts:
    usage = obs.status.get("usage") or {}
    hours = usage.get("gpuHours") or {}
    return Amounts(
        float(hours.get("spot") or 0.0) + float(hours.get("onDemand") or 0.0),
        float(usage.get("cost") or 0.0),
    )


def fit_advisor(
    budgets: Callable[[], Iterable[dict[str, Any]]], price: Price | None = None
) -> Callable[[Observed], Advice | None]:
    """Advice for TrainingController.advisors: condition BudgetFits, False when what is left of
    the job's estimate (minus what it already used) exceeds what a covering Budget has left."""

    def check(obs: Observed) -> Advice | None:
        if obs.spec is None:
            return None
        hours = estimate(obs.spec)
        states = [s for s in _covering(budgets(), obs) if s.left is not None]
        own = _own(obs)
        per_hour = price(obs.spec) if price else None
        checked = 0
        for state in states if hours is not None else []:
            assert state.left is not None
            assert hours is not None
            if state.spec.limit.gpu_hours is not None:
                need, what = max(0.0, hours - own.gpu_hours), "GPU-hours"
            elif per_hour is not None:
                need = max(0.0, hours * per_hour - own.amount)
                what = state.currency or "in money"
            else:
                continue  # a money limit without prices: nothing to estimate with
            checked += 1
            if need > state.left:
                return Advice(
                    FITS,
                    False,
                    "EstimateExceedsBudget",
                    f"the estimate of {need:.4g} {what} ({obs.spec.workers} worker(s) x "
                    f"{obs.spec.resources.gpu} GPU(s) x activeDeadlineSeconds) exceeds the "
                    f"{state.left:.4g} left in budget {state.name}",
                )
        if checked:
            return Advice(
                FITS, True, "Fits", "the estimate fits what the covering Budgets have left"
            )
        if any(c.get("type") == FITS for c in obs.status.get("conditions") or []):
            return Advice(
                FITS, True, "NoEstimate", "no covering Budget, deadline or price to check"
            )
        return None

    return check
