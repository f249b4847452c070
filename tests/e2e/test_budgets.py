"""Budgets end to end: kwok runs GPU TrainingJobs whose metered usage (status.usage) counts against
a cluster-scoped Budget; at its soft threshold it warns (condition, Event, metric), at its limit a
new TrainingJob waits naming the Budget, and it starts when the limit is raised or the window
rolls over (the operator's clock moved forward); SpotOnly sends it to spot instead. Budgets are
in GPU-hours with small limits (0.01 h = 36 GPU-seconds) so that they fill in seconds."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from stratus.api.common import API_VERSION, GROUP, VERSION
from tests.builders import TrainingJobBuilder
from tests.conftest import Cluster, OperatorClock, OperatorProcess
from tests.support import wait_for

pytestmark = pytest.mark.usefixtures("operator")
Obj = dict[str, Any]


class Env:
    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self.ns = namespace
        self.custom = client.CustomObjectsApi(cluster.api)
        self.core = client.CoreV1Api(cluster.api)
        self.batch = client.BatchV1Api(cluster.api)
        self.budgets: list[str] = []

    # -- Budgets (cluster-scoped) --
    def budget(self, **spec: Any) -> str:
        name = f"b-{uuid.uuid4().hex[:8]}"
        body = {
            "apiVersion": API_VERSION,
            "kind": "Budget",
            "metadata": {"name": name},
            "spec": {"namespaces": [self.ns], **spec},
        }
        self.custom.create_cluster_custom_object(GROUP, VERSION, "budgets", body)
        self.budgets.append(name)
        return name

    def get_budget(self, name: str) -> Obj:
        obj: Obj = self.custom.get_cluster_custom_object(GROUP, VERSION, "budgets", name)
        return obj

    def patch_budget(self, name: str, spec: Obj) -> None:
        self.custom.patch_cluster_custom_object(GROUP, VERSION, "budgets", name, {"spec": spec})

    def wait_budget(
        self, name: str, what: str, check: Callable[[Obj], bool], timeout: float = 120
    ) -> Obj:
        def probe() -> Obj | None:
            status = self.get_budget(name).get("status") or {}
            return status if check(status) else None

        return wait_for(f"budget {name}: {what}", probe, timeout=timeout, interval=1)

    def budget_events(self, name: str) -> list[Any]:
        # Events about a cluster-scoped object live in default, as client-go puts them.
        found = self.core.list_namespaced_event(
            "default", field_selector=f"involvedObject.kind=Budget,involvedObject.name={name}"
        )
        return list(found.items)

    # -- TrainingJobs --
    def create(self, builder: TrainingJobBuilder, **spec: Any) -> None:
        obj = builder.build()
        obj["spec"].update(spec)
        self.custom.create_namespaced_custom_object(GROUP, VERSION, self.ns, "trainingjobs", obj)

    def get(self, name: str) -> Obj:
        obj: Obj = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.ns, "trainingjobs", name
        )
        return obj

    def delete(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.ns, "trainingjobs", name)

    def wait(self, name: str, what: str, check: Callable[[Obj], bool], timeout: float = 90) -> Obj:
        def probe() -> Obj | None:
            status = self.get(name).get("status") or {}
            return status if check(status) else None

        return wait_for(f"{name}: {what}", probe, timeout=timeout, interval=0.5)

    def events(self, name: str) -> list[Any]:
        found = self.core.list_namespaced_event(
            self.ns, field_selector=f"involvedObject.name={name}"
        )
        return list(found.items)

    def cleanup(self) -> None:
        for name in self.budgets:
            try:
                self.custom.delete_cluster_custom_object(GROUP, VERSION, "budgets", name)
            except ApiException as exc:
                if exc.status != 404:
                    raise


@pytest.fixture
def env(cluster: Cluster, namespace: str) -> Iterator[Env]:
    made = Env(cluster, namespace)
    try:
        yield made
    finally:
        made.cleanup()


def condition(status: Obj, kind: str) -> Obj:
    return next((c for c in status.get("conditions") or [] if c["type"] == kind), {})


def is_true(kind: str) -> Callable[[Obj], bool]:
    return lambda status: condition(status, kind).get("status") == "True"


def phase(*phases: str) -> Callable[[Obj], bool]:
    return lambda status: status.get("phase") in phases


def burner(name: str, gpus: int = 4) -> TrainingJobBuilder:
    """A TrainingJob that runs for ten minutes on `gpus` GPUs: 0.01 GPU-hours every 9 s at 4."""
    return TrainingJobBuilder(name).gpus(gpus).runs_for("10m")


def metric(operator: OperatorProcess, name: str, budget: str) -> float | None:
    pattern = rf'^{name}\{{budget="{budget}"\}} (\S+)$'
    found = re.search(pattern, operator.metrics(), re.MULTILINE)
    return float(found.group(1)) if found else None


def test_soft_alert_hard_stop_and_a_raised_limit(env: Env, operator: OperatorProcess) -> None:
    budget = env.budget(limit={"gpuHours": 0.01}, softThreshold=50)
    env.wait_budget(budget, "counted", lambda s: "used" in s, timeout=60)
    # Its estimate (4 GPUs x 1 h) cannot fit: it is told so at once, and starts anyway.
    env.create(burner("burner"), activeDeadlineSeconds=3600)
    running = env.wait("burner", "Running", phase("Running"))
    fits = condition(running, "BudgetFits")
    assert (fits["status"], fits["reason"]) == ("False", "EstimateExceedsBudget")
    assert f"budget {budget}" in fits["message"]
    assert "EstimateExceedsBudget" in {
        e.reason for e in env.events("burner") if e.type == "Warning"
    }

    soft = env.wait_budget(budget, "SoftLimitReached", is_true("SoftLimitReached"))
    assert soft["percentUsed"] >= 50
    assert soft["topConsumers"][0]["name"] == "burner"
    assert soft["topConsumers"][0]["namespace"] == env.ns
    warned = wait_for(
        "the BudgetSoftLimit Event",
        lambda: [e for e in env.budget_events(budget) if e.reason == "BudgetSoftLimit"],
    )
    assert warned[0].type == "Warning"
    ratio = wait_for(
        "the used-ratio metric", lambda: metric(operator, "stratus_budget_used_ratio", budget)
    )
    assert ratio >= 0.5
    assert metric(operator, "stratus_budget_soft_threshold_ratio", budget) == 0.5

    spent = env.wait_budget(budget, "LimitReached", is_true("LimitReached"))
    assert spent["remaining"] == 0
    wait_for(
        "the BudgetExhausted Event",
        lambda: [e for e in env.budget_events(budget) if e.reason == "BudgetExhausted"],
    )

    env.create(burner("waiter", gpus=1))
    waiting = env.wait("waiter", "Waiting on the budget", phase("Waiting"))
    ready = condition(waiting, "Ready")
    assert ready["reason"] == "BudgetExhausted"
    assert f"budget {budget} is exhausted" in ready["message"]
    assert "0 left" in ready["message"]
    assert "rolls over at" in ready["message"]
    assert not env.batch.list_namespaced_job(
        env.ns, label_selector="stratus.dev/trainingjob=waiter"
    ).items
    # A running attempt is never stopped by a budget.
    assert env.get("burner")["status"]["phase"] == "Running"

    env.patch_budget(budget, {"limit": {"gpuHours": 1000}})
    env.wait(
        "waiter", "started after the limit was raised", phase("Pending", "Running"), timeout=60
    )
    env.wait_budget(
        budget,
        "below the limit again",
        lambda s: condition(s, "LimitReached").get("status") == "False",
    )


def test_the_window_rolling_over_lets_a_waiting_job_start(
    env: Env, operator_clock: OperatorClock
) -> None:
    # One day windows in Tokyo: the next one starts at the next midnight there.
    budget = env.budget(
        limit={"gpuHours": 0.01},
        window={"type": "RollingDays", "days": 1, "timeZone": "Asia/Tokyo"},
    )
    env.create(burner("burner"))
    spent = env.wait_budget(budget, "LimitReached", is_true("LimitReached"))
    # Deleted during the window, its usage stays counted.
    env.delete("burner")
    retired = env.wait_budget(
        budget,
        "the deleted job's usage retired",
        lambda s: (s.get("retired") or {}).get("gpuHours", 0) > 0,
    )
    assert retired["used"]["gpuHours"] >= spent["used"]["gpuHours"]
    assert is_true("LimitReached")(retired)

    env.create(burner("waiter", gpus=1))
    env.wait("waiter", "Waiting on the budget", phase("Waiting"))

    end = dt.datetime.fromisoformat(retired["windowEnd"].replace("Z", "+00:00"))
    operator_clock.set((end - dt.datetime.now(dt.UTC)).total_seconds() + 30)
    env.wait("waiter", "started in the new window", phase("Pending", "Running"), timeout=60)
    rolled = env.wait_budget(
        budget, "the next window", lambda s: s.get("windowStart") == retired["windowEnd"]
    )
    assert condition(rolled, "LimitReached").get("status") == "False"


def test_spot_only_sends_new_attempts_to_spot(env: Env) -> None:
    # A limit of 0 is spent from the start.
    budget = env.budget(limit={"gpuHours": 0}, action="SpotOnly")
    env.wait_budget(budget, "LimitReached", is_true("LimitReached"), timeout=60)
    env.create(burner("cheap", gpus=1))
    env.wait("cheap", "Running", phase("Running"))
    (job,) = env.batch.list_namespaced_job(
        env.ns, label_selector="stratus.dev/trainingjob=cheap"
    ).items
    affinity = job.spec.template.spec.affinity.node_affinity
    terms = affinity.required_during_scheduling_ignored_during_execution.node_selector_terms
    expressions = [e for t in terms for e in t.match_expressions or []]
    assert any(e.key == "karpenter.sh/capacity-type" and e.values == ["spot"] for e in expressions)
    reasons = {e.reason: e.message for e in env.events("cheap")}
    assert f"budget {budget} is exhausted" in reasons["BudgetSpotOnly"]
    assert "started on spot capacity" in reasons["AttemptStarted"]
