"""Metering through the controllers, on the fake API server: what a status write adds reaches
the counters under bounded labels, and a deleted pod's time is kept until a write settles it."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

from prometheus_client import REGISTRY

from stratus import metrics
from stratus.config import OperatorConfig, from_env
from stratus.cost.pods import MeteredPod
from tests.unit.fakes import NOW, ServingWorld

CONFIG = from_env(
    {
        "STRATUS_PRICES": json.dumps({"default": {"spot": 1.0, "onDemand": 3.0}}),
        "STRATUS_TEAMS": "nlp",
        "STRATUS_COST_CENTERS": "cc-1",
    }
)


def counted(metric: str, capacity: str, **labels: str) -> float:
    every = {"team": "nlp", "cost_center": "cc-1", "kind": "InferenceService"}
    every |= {"gpu_type": "default", "capacity_type": capacity, **labels}
    return REGISTRY.get_sample_value(metric, every) or 0.0


def pod(uid: str, minutes: int, finished: dt.datetime | None = None) -> MeteredPod:
    started = NOW - dt.timedelta(minutes=minutes)
    return MeteredPod(uid, f"web-{uid}", 1, "on-demand", started, finished)


def test_serving_usage_is_written_counted_and_a_deleted_pod_is_settled_once() -> None:
    world = ServingWorld(
        {"image": "serve:1", "model": {"uri": "https://m/x"}, "team": "nlp", "costCenter": "cc-1"},
        dataclasses.replace(CONFIG),
    )
    live = [pod("a", 60), pod("b", 30)]
    world.controller.pods = lambda _key: list(live)
    hours_before = counted("stratus_gpu_seconds_total", "on-demand")
    cost_before = counted("stratus_cost_total", "on-demand")
    assert world.reconcile() is not None  # comes back to refresh while pods run
    usage = world.obj["status"]["usage"]
    assert usage["gpuHours"] == {"spot": 0.0, "onDemand": 1.5}
    assert usage["cost"] == 4.5
    assert counted("stratus_gpu_seconds_total", "on-demand") - hours_before == 1.5 * 3600
    assert counted("stratus_cost_total", "on-demand") - cost_before == 4.5
    # b is deleted (stopped a minute ago); the cache forgets it, its last state is kept.
    gone = pod("b", 30, NOW - dt.timedelta(minutes=1))
    live.remove(live[1])
    world.controller.pod_gone(world.key, gone)
    world.controller.real_clock = lambda: NOW + dt.timedelta(seconds=5)
    world.cache.sync()
    world.reconcile()
    usage = world.obj["status"]["usage"]
    # a ran 5 s more; b's time was all counted already (it stopped before the last write).
    assert usage["endedGpuSeconds"]["onDemand"] == 1.5 * 3600 + 5
    assert world.controller.gone == {}
    assert (
        counted("stratus_gpu_seconds_total", "on-demand") - hours_before
        == usage["gpuHours"]["onDemand"] * 3600
    )


def test_a_cost_center_outside_the_admins_list_is_counted_as_other() -> None:
    world = ServingWorld(
        {"image": "serve:1", "model": {"uri": "https://m/x"}, "team": "t-9", "costCenter": "x-1"},
        CONFIG,
    )
    world.controller.pods = lambda _key: [pod("a", 60)]
    before = counted("stratus_gpu_seconds_total", "on-demand", team="other", cost_center="other")
    world.reconcile()
    after = counted("stratus_gpu_seconds_total", "on-demand", team="other", cost_center="other")
    assert after - before == 3600
    exported = {
        (s.labels["team"], s.labels["cost_center"])
        for family in REGISTRY.collect()
        for s in family.samples
        if s.name == "stratus_gpu_seconds_total"
    }
    assert not {("t-9", "x-1"), ("t-9", "other"), ("other", "x-1")} & exported


def test_without_a_price_table_the_counters_get_hours_only() -> None:
    world = ServingWorld({"image": "serve:1", "model": {"uri": "https://m/x"}}, OperatorConfig())
    world.controller.pods = lambda _key: [pod("a", 60)]
    before = counted("stratus_cost_total", "on-demand", team="other", cost_center="other",
                     gpu_type="other")  # fmt: skip
    world.reconcile()
    usage = world.obj["status"]["usage"]
    assert usage["gpuHours"]["onDemand"] == 1.0
    assert "cost" not in usage
    assert counted("stratus_gpu_seconds_total", "on-demand", team="other", cost_center="other",
                   gpu_type="other") >= 3600  # fmt: skip
    assert counted("stratus_cost_total", "on-demand", team="other", cost_center="other",
                   gpu_type="other") == before  # fmt: skip


def test_the_controller_meters_on_real_time_while_its_clock_is_moved_a_month_on() -> None:
    world = ServingWorld({"image": "serve:1", "model": {"uri": "https://m/x"}}, CONFIG)
    world.controller.pods = lambda _key: [pod("a", 60)]
    world.controller.clock = lambda: NOW + dt.timedelta(days=30)
    world.reconcile()
    usage = world.obj["status"]["usage"]
    assert usage["gpuHours"]["onDemand"] == 1.0
    assert usage["meteredAt"] == "2026-01-01T12:00:00.000Z"


def test_each_workload_is_exported_with_its_status_usage_from_the_cache() -> None:
    """The per-workload series are the cached status.usage, read at scrape time: they follow
    the status, and go with the workload."""
    world = ServingWorld(
        {"image": "serve:1", "model": {"uri": "https://m/x"}, "team": "nlp"},
        dataclasses.replace(CONFIG),
    )
    world.controller.pods = lambda _key: [pod("a", 60)]
    world.controller.keys = lambda: [world.key]
    collector = metrics.WorkloadUsageCollector(world.controller.workloads_cached)
    assert [s for family in collector.collect() for s in family.samples] == []  # nothing metered
    world.reconcile()
    world.cache.sync()
    samples = {
        (s.name, s.labels.get("capacity_type")): (s.labels, s.value)
        for family in collector.collect()
        for s in family.samples
    }
    identity = {
        "namespace": "ns",
        "kind": "InferenceService",
        "name": "web",
        "uid": "uid-web",
        "team": "nlp",
    }
    assert samples == {
        ("stratus_workload_gpu_seconds", "spot"): ({**identity, "capacity_type": "spot"}, 0.0),
        ("stratus_workload_gpu_seconds", "on-demand"): (
            {**identity, "capacity_type": "on-demand"},
            3600.0,
        ),
        ("stratus_workload_cost", None): (identity, 3.0),
    }
    world.kube.objects.pop(("InferenceService", "ns", "web"))
    world.cache.sync()
    assert [s for family in collector.collect() for s in family.samples] == []
