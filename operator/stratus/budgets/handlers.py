"""kopf wiring for Budgets: indexes hold the Budgets and every TrainingJob's and
InferenceService's usage (what the ledger needs only); a Budget's own change queues it, and each
Budget counts again every INTERVAL seconds, as usage grows while pods run."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from stratus.api import budget, inferenceservice, trainingjob
from stratus.api.common import GROUP, VERSION
from stratus.budgets.controller import BudgetController
from stratus.budgets.ledger import WorkloadUsage, workload_usage
from stratus.wiring import Wiring, snapshot


def _bind(controller: BudgetController, indexes: Mapping[str, Any]) -> None:
    budgets, tjs, infs = (
        indexes["budget_objects"],
        indexes["budget_trainingjobs"],
        indexes["budget_inferenceservices"],
    )
    workloads = {trainingjob.KIND: tjs, inferenceservice.KIND: infs}
    controller.budgets = lambda k: budgets.get(k, ())
    controller.keys = lambda: list(budgets.keys())
    controller.workloads = lambda kind: [
        w for store in workloads[str(kind)].values() for w in store
    ]


WIRING: Wiring[BudgetController] = Wiring(_bind)


@kopf.index(GROUP, VERSION, budget.PLURAL)
def budget_objects(body: kopf.Body, name: str, **_: Any) -> dict[str, dict[str, Any]]:
    return {name: snapshot(body)}


@kopf.index(GROUP, VERSION, trainingjob.PLURAL)
def budget_trainingjobs(
    body: kopf.Body, namespace: str | None, name: str, **_: Any
) -> dict[tuple[str, str], WorkloadUsage]:
    return {(namespace or "", name): workload_usage(trainingjob.KIND, body)}


@kopf.index(GROUP, VERSION, inferenceservice.PLURAL)
def budget_inferenceservices(
    body: kopf.Body, namespace: str | None, name: str, **_: Any
) -> dict[tuple[str, str], WorkloadUsage]:
    return {(namespace or "", name): workload_usage(inferenceservice.KIND, body)}


@kopf.on.event(GROUP, VERSION, budget.PLURAL)
async def budget_changed(name: str, **kwargs: Any) -> None:
    WIRING.queue(name, kwargs)
