"""The Budget reconciler: counts the covered workloads' usage into each Budget's status (the
ledger, usage, remaining, top consumers, conditions), posts the Events the planner decides, and
exposes the figures the metrics and the training gate read. It holds no decisions of its own."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any

from stratus import reconciling
from stratus.api.budget import KIND
from stratus.budgets import planner
from stratus.budgets.gate import budget_state
from stratus.budgets.ledger import WorkloadUsage
from stratus.clock import now as clock_now
from stratus.kube import Kube
from stratus.metrics import BudgetFigures

# Each Budget is counted again at least this often (seconds): usage grows while pods run.
INTERVAL = 15.0
Lookup = Callable[[Hashable], Iterable[Any]]


@dataclass
class BudgetController:
    kube: Kube
    # Budget name -> its object; "TrainingJob" / "InferenceService" -> every such workload.
    budgets: Lookup
    workloads: Lookup
    keys: Callable[[], Iterable[str]] = lambda: ()
    clock: Callable[[], dt.datetime] = clock_now
    status_writer: reconciling.StatusWriter = field(init=False)

    def __post_init__(self) -> None:
        self.status_writer = reconciling.StatusWriter(self.kube, KIND)

    def all_budgets(self) -> list[dict[str, Any]]:
        return [obj for key in list(self.keys()) for obj in self.budgets(key)]

    def figures(self) -> list[BudgetFigures]:
        """Each Budget's usage against its limit now, for the metrics endpoint."""
        now = self.clock()
        out = []
        for obj in self.all_budgets():
            state = budget_state(obj, now)
            if state is not None:
                unit = "gpu_hours" if state.spec.limit.gpu_hours is not None else "amount"
                soft = state.spec.soft_threshold / 100
                out.append(BudgetFigures(state.name, unit, state.used or 0.0, state.limit, soft))
        return out

    async def reconcile(self, key: Hashable) -> float | None:
        assert isinstance(key, str)
        return await reconciling.timed(KIND, self._reconcile(key))

    async def _reconcile(self, key: str) -> float | None:
        obj = reconciling.live(self.budgets(key))
        if obj is None:
            self.status_writer.forget(key)
            return None
        meta = obj["metadata"]
        if self.status_writer.stale(key, meta):
            return reconciling.STALE_RETRY
        workloads: list[WorkloadUsage] = [
            *self.workloads("TrainingJob"),
            *self.workloads("InferenceService"),
        ]
        status = obj.get("status") or {}
        plan = planner.plan(
            obj.get("spec"), status, int(meta.get("generation") or 0), workloads, self.clock()
        )
        retry = await self.status_writer.write(key, meta, status, plan.status)
        if retry is not None:
            return retry
        reconciling.record(self.kube, obj, plan.events)
        return min(INTERVAL, plan.requeue_after or INTERVAL)
