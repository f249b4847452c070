"""Metering end to end: a spot TrainingJob preempted once that completes on demand, and an
InferenceService scaled from 2 replicas to 3 and back. The ground truth is what the pods say:
every container's start and end (or the time metered, for one still running) times its GPUs,
read from each pod's last state as a watch saw it. status.usage must match it within 2%, its
cost must be those hours at the session's price table, and the counters must add up to it; a
real Prometheus scraping the operator gives `stratus cost --by workload` the window's figures.
Run with -s to see the figures."""

from __future__ import annotations

import copy
import datetime as dt
import json
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from stratus.api.common import GROUP, VERSION
from stratus.devcluster import kubeapi
from stratus.devcluster.nodepools import SIMULATED_POD_SPEC
from tests.builders import TrainingJobBuilder
from tests.conftest import PRICES, Cluster, OperatorProcess, free_port
from tests.prometheus import Prometheus
from tests.support import Recorder, wait_for

pytestmark = pytest.mark.usefixtures("operator")
Obj = dict[str, Any]
CAPACITY_LABEL = "karpenter.sh/capacity-type"
COST_CENTER = "metering"
SERVING_PODS = "stratus.dev/inferenceservice=web"
TOLERANCE = 0.02
# What a status refresh Prometheus scraped late may leave out of a window: 10 GPU-seconds.
SLACK_HOURS = 10 / 3600
SPOT, ON_DEMAND = PRICES["default"]["spot"], PRICES["default"]["onDemand"]


def parse(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def truth(pods: Iterable[Any], capacity_of: dict[str, str], at: dt.datetime) -> dict[str, float]:
    """GPU-seconds by capacity type from each pod's last recorded state: its containers'
    earliest start to their latest end (`at` while one still runs), times its GPUs."""
    last = {p.metadata.uid: p for p in pods}
    seconds = {"spot": 0.0, "on-demand": 0.0}
    for pod in last.values():
        states = [c.state for c in pod.status.container_statuses or []]
        starts = [
            (s.running or s.terminated).started_at for s in states if s.running or s.terminated
        ]
        if not starts:
            continue
        ends = [s.terminated.finished_at for s in states if s.terminated]
        end = max(ends) if len(ends) == len(states) else at
        gpus = sum(
            int((c.resources.limits or {}).get("nvidia.com/gpu", 0)) for c in pod.spec.containers
        )
        seconds[capacity_of[pod.spec.node_name]] += (
            max(0.0, (end - min(starts)).total_seconds()) * gpus
        )
    return seconds


def ended(pod: Any) -> bool:
    return all(c.state.terminated for c in pod.status.container_statuses or [])


def all_ended(pods: list[Any]) -> bool:
    """Every recorded pod's last state has all its containers ended."""
    return all(ended(p) for p in {p.metadata.uid: p for p in pods}.values())


def counters(operator: OperatorProcess, kind: str) -> dict[tuple[str, str], float]:
    """stratus_gpu_seconds_total and stratus_cost_total of the metering cost center and `kind`,
    by (metric, capacity type)."""
    found: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(operator.metrics()):
        for sample in family.samples:
            labels = sample.labels
            if (
                sample.name in ("stratus_gpu_seconds_total", "stratus_cost_total")
                and labels.get("cost_center") == COST_CENTER
                and labels.get("kind") == kind
            ):
                assert (labels["team"], labels["gpu_type"]) == ("nlp", "default")
                found[sample.name, labels["capacity_type"]] = sample.value
    return found


def report(what: str, metered: Obj, seconds: dict[str, float]) -> None:
    hours = metered["gpuHours"]
    for key, capacity in (("spot", "spot"), ("onDemand", "on-demand")):
        true = seconds[capacity] / 3600
        error = abs(hours[key] - true) / true if true else 0.0
        print(
            f"\n{what} {capacity}: metered {hours[key]:.6f} GPU-h, truth {true:.6f} GPU-h, "
            f"error {error:.3%}",
            end="",
        )
    print(
        f"\n{what} cost {metered['cost']} {metered['currency']}, on demand "
        f"{metered['onDemandCost']}, savings {metered['savings']}"
    )


def assert_matches(metered: Obj, seconds: dict[str, float]) -> None:
    hours = metered["gpuHours"]
    for key, capacity in (("spot", "spot"), ("onDemand", "on-demand")):
        assert hours[key] == pytest.approx(seconds[capacity] / 3600, rel=TOLERANCE, abs=1e-9)
    cost = hours["spot"] * SPOT + hours["onDemand"] * ON_DEMAND
    on_demand = (hours["spot"] + hours["onDemand"]) * ON_DEMAND
    assert metered["cost"] == pytest.approx(cost, abs=1e-3)
    assert metered["onDemandCost"] == pytest.approx(on_demand, abs=1e-3)
    assert metered["savings"] == pytest.approx(on_demand - cost, abs=1e-3)
    assert (metered["currency"], metered["gpuType"]) == ("USD", "default")
    true_cost = (seconds["spot"] * SPOT + seconds["on-demand"] * ON_DEMAND) / 3600
    assert metered["cost"] == pytest.approx(true_cost, rel=TOLERANCE)


def assert_counted(operator: OperatorProcess, kind: str, get_usage: Any) -> None:
    """The counters add up to what the status says (read between two writes)."""

    def agree() -> bool:
        before = get_usage()
        found = counters(operator, kind)
        if get_usage() != before:
            return False
        hours = before["gpuHours"]
        expected = {
            ("stratus_gpu_seconds_total", "spot"): hours["spot"] * 3600,
            ("stratus_gpu_seconds_total", "on-demand"): hours["onDemand"] * 3600,
            ("stratus_cost_total", "spot"): hours["spot"] * SPOT,
            ("stratus_cost_total", "on-demand"): hours["onDemand"] * ON_DEMAND,
        }
        return all(abs(found.get(k, 0.0) - v) <= 1e-6 * max(1.0, v) for k, v in expected.items())

    wait_for(f"the {kind} counters to add up to its status.usage", agree, timeout=60)


def stratus_cost(cluster: Cluster, namespace: str, *args: str) -> str:
    command = [sys.executable, "-m", "stratus.cli", "cost", *args]
    command += ["-n", namespace, "--kubeconfig", str(cluster.kubeconfig)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    return done.stdout


@pytest.fixture
def scraper(operator: OperatorProcess, tmp_path: Path) -> Iterator[Prometheus]:
    """A real Prometheus scraping the operator every second, from before the test's workload."""
    server = Prometheus(tmp_path, f"127.0.0.1:{operator.metrics_port}", free_port())
    yield server
    server.stop()


@pytest.fixture
def nodes(cluster: Cluster) -> dict[str, str]:
    """Capacity type of every node, read before any is reclaimed."""
    core = client.CoreV1Api(cluster.api)
    return {
        n.metadata.name: (n.metadata.labels or {}).get(CAPACITY_LABEL, "on-demand")
        for n in core.list_node().items
    }


def test_a_preempted_spot_job_finished_on_demand_is_metered_as_its_pods_ran(
    cluster: Cluster,
    namespace: str,
    operator: OperatorProcess,
    nodes: dict[str, str],
    scraper: Prometheus,
) -> None:
    custom = client.CustomObjectsApi(cluster.api)
    core = client.CoreV1Api(cluster.api)
    obj = (
        TrainingJobBuilder("metered")
        .spot(max_preemptions=3, fallback_after=1)
        .team("nlp")
        .gpus(2)
        .runs_for("20s")
        .build()
    )
    obj["spec"]["costCenter"] = COST_CENTER
    recorder = Recorder(
        core.list_namespaced_pod, namespace, label_selector="stratus.dev/trainingjob=metered"
    )
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "trainingjobs", obj)

    def status() -> Obj:
        found: Obj = custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace, "trainingjobs", "metered"
        )
        return found.get("status") or {}

    first = wait_for(
        "attempt 1 running",
        lambda: next(
            (
                p
                for p in core.list_namespaced_pod(
                    namespace, label_selector="stratus.dev/attempt=1"
                ).items
                if p.status.phase == "Running"
            ),
            None,
        ),
    )
    assert nodes[first.spec.node_name] == "spot"
    # The running attempt is metered while it runs, not only once it ends.
    running = wait_for(
        "usage of the running attempt",
        lambda: (u := status().get("usage")) and u["gpuHours"]["spot"] > 0 and u,
        timeout=45,
    )
    assert running["gpuHours"]["onDemand"] == 0
    time.sleep(3)
    kubeapi.connect(cluster.kubeconfig).preempt(first.spec.node_name, replace=True)
    done = wait_for(
        "Succeeded on demand",
        lambda: (s := status()).get("phase") == "Succeeded" and s,
        timeout=120,
    )
    assert (done["preemptions"], done["attempt"]) == (1, 2)
    recorder.wait("every pod's end seen by the watch", all_ended)
    seconds = truth(recorder.stop(), nodes, dt.datetime.now(dt.UTC))
    metered = done["usage"]
    report("TrainingJob", metered, seconds)
    assert seconds["spot"] > 0
    assert seconds["on-demand"] >= 2 * 20
    assert_matches(metered, seconds)
    assert metered["savings"] > 0
    assert_counted(operator, "TrainingJob", lambda: status()["usage"])
    # stratus cost reads the same figures.
    (item,) = json.loads(stratus_cost(cluster, namespace, "--by", "workload", "-o", "json"))[
        "items"
    ]
    assert (item["kind"], item["name"], item["team"]) == ("TrainingJob", "metered", "nlp")
    assert item["gpuHours"] == metered["gpuHours"]
    assert (item["cost"], item["savings"]) == (metered["cost"], metered["savings"])
    print(stratus_cost(cluster, namespace, "--by", "workload"))
    # Over a window, from Prometheus: what the job used since its series' first sample, which
    # is the first usage the status showed (`running`), give or take a refresh seen late.
    total = sum(metered["gpuHours"].values())
    floor = total - sum(running["gpuHours"].values()) - SLACK_HOURS

    def windowed() -> Obj | None:
        argv = ("--prometheus", scraper.url, "--window", "10m", "--by", "workload", "-o", "json")
        found = json.loads(stratus_cost(cluster, namespace, *argv))["items"]
        return found[0] if found and sum(found[0]["gpuHours"].values()) >= floor - 1e-6 else None

    item = wait_for("the window's figures in Prometheus", windowed, timeout=30)
    assert (item["namespace"], item["kind"], item["name"]) == (namespace, "TrainingJob", "metered")
    assert sum(item["gpuHours"].values()) <= total + 1e-6
    assert item["gpuHours"]["onDemand"] == pytest.approx(metered["gpuHours"]["onDemand"])
    assert metered["cost"] - SPOT * (total - floor) <= item["cost"] <= metered["cost"] + 1e-3


def test_an_inferenceservice_scaled_up_and_down_is_metered_as_its_pods_ran(
    cluster: Cluster, namespace: str, operator: OperatorProcess, nodes: dict[str, str]
) -> None:
    custom = client.CustomObjectsApi(cluster.api)
    core = client.CoreV1Api(cluster.api)
    recorder = Recorder(core.list_namespaced_pod, namespace, label_selector=SERVING_PODS)
    custom.create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        "inferenceservices",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "InferenceService",
            "metadata": {"name": "web"},
            "spec": {
                "image": "serve:1",
                "model": {"uri": "https://models.example.com/m.bin"},
                "replicas": {"min": 2, "max": 2},
                "team": "nlp",
                "costCenter": COST_CENTER,
                "podTemplate": {"spec": copy.deepcopy(SIMULATED_POD_SPEC)},
            },
        },
    )

    def status() -> Obj:
        found: Obj = custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace, "inferenceservices", "web"
        )
        return found.get("status") or {}

    def running(count: int) -> list[Any]:
        def probe() -> list[Any] | None:
            pods = core.list_namespaced_pod(namespace, label_selector=SERVING_PODS).items
            ok = len(pods) == count and all(p.status.phase == "Running" for p in pods)
            return list(pods) if ok else None

        return wait_for(f"{count} pods running and no other", probe, timeout=60)

    def scale(replicas: int) -> None:
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, "inferenceservices", "web",
            {"spec": {"replicas": {"min": replicas, "max": replicas}}},
        )  # fmt: skip

    pods = running(2)
    assert pods[0].metadata.labels["stratus.dev/team"] == "nlp"
    assert pods[0].metadata.labels["stratus.dev/cost-center"] == COST_CENTER
    time.sleep(8)
    scale(3)
    running(3)
    time.sleep(8)
    scale(2)
    running(2)
    recorder.wait(
        "the removed pod's end seen by the watch",
        lambda seen: any(p.metadata.deletion_timestamp and ended(p) for p in seen),
    )
    seen = recorder.stop()
    deleted = [
        p
        for p in {p.metadata.uid: p for p in seen}.values()
        if p.metadata.deletion_timestamp is not None
    ]
    assert len(deleted) == 1
    (stopped,) = [s.state.terminated.finished_at for s in deleted[0].status.container_statuses]
    # The deleted pod is settled in the first write after it went; a later refresh is fine too.
    usage = wait_for(
        "usage metered past the deleted pod's stop",
        lambda: (u := status().get("usage")) and parse(u["meteredAt"]) >= stopped and u,
        timeout=45,
    )
    seconds = truth(seen, nodes, parse(usage["meteredAt"]))
    report("InferenceService", usage, seconds)
    assert seconds["on-demand"] > 0
    assert seconds["spot"] == 0
    assert_matches(usage, seconds)
    assert usage["savings"] == 0
    assert_counted(operator, "InferenceService", lambda: status()["usage"])
    # The usage keeps moving while the pods run, with nothing else changing.
    metered_at = parse(usage["meteredAt"])
    moved = wait_for(
        "a later refresh of usage",
        lambda: (u := status()["usage"]) and parse(u["meteredAt"]) > metered_at and u,
        timeout=45,
    )
    assert moved["gpuHours"]["onDemand"] > usage["gpuHours"]["onDemand"]
    assert_matches(moved, truth(seen, nodes, parse(moved["meteredAt"])))
