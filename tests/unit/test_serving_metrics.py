"""An InferenceService's metric series go with it: none is exported after it is deleted."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from stratus import metrics
from stratus.config import OperatorConfig
from stratus.kube import Kube
from stratus.serving.controller import ServingController
from tests.unit.test_serving_analysis import RecordingKube


def exported(namespace: str, name: str) -> list[str]:
    """The series of `namespace`/`name` in what the metrics endpoint serves."""
    text = generate_latest(REGISTRY).decode()
    return [
        f"{sample.name}{sample.labels}"
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.labels.get("namespace") == namespace and sample.labels.get("name") == name
    ]


def record(namespace: str, name: str) -> None:
    metrics.CANARY_WEIGHT.labels(namespace, name).set(20)
    for metric in ("errors", "latency"):
        metrics.ANALYSIS_VALUE.labels(namespace, name, metric).set(0.5)
        metrics.ANALYSIS_FAILURES.labels(namespace, name, metric).inc()


def test_series_of_picks_one_services_label_sets_once() -> None:
    samples = [
        {"namespace": "ns", "name": "web", "metric": "errors"},
        {"namespace": "ns", "name": "web", "metric": "errors"},  # _total and _created
        {"namespace": "ns", "name": "web", "metric": "latency"},
        {"namespace": "ns", "name": "web2", "metric": "errors"},
        {"namespace": "other", "name": "web", "metric": "errors"},
    ]
    assert metrics.series_of(samples, metrics.ANALYSIS_LABELS, "ns", "web") == [
        ("ns", "web", "errors"),
        ("ns", "web", "latency"),
    ]
    assert metrics.series_of(samples, metrics.SERVICE_LABELS, "ns", "gone") == []


def test_forgetting_a_service_removes_its_series_and_only_its() -> None:
    record("metrics-a", "web")
    record("metrics-a", "kept")
    assert len(exported("metrics-a", "web")) >= 5
    metrics.forget_inferenceservice("metrics-a", "web")
    assert exported("metrics-a", "web") == []
    assert len(exported("metrics-a", "kept")) >= 5
    metrics.forget_inferenceservice("metrics-a", "web")  # twice is harmless
    metrics.forget_inferenceservice("metrics-a", "kept")


def test_a_deleted_inferenceservice_leaves_no_series_behind() -> None:
    record("metrics-b", "web")
    record("metrics-b", "other")
    gone: list[dict[str, Any]] = []
    controller = ServingController(
        kube=cast(Kube, RecordingKube()),
        config=OperatorConfig(),
        services=lambda _key: gone,
        deployments=lambda _key: (),
        failures=lambda _key: (),
    )
    assert asyncio.run(controller.reconcile(("metrics-b", "web"))) is None
    assert exported("metrics-b", "web") == []
    assert len(exported("metrics-b", "other")) >= 5
    metrics.forget_inferenceservice("metrics-b", "other")


def test_one_being_deleted_is_forgotten_too() -> None:
    record("metrics-c", "web")
    deleting = {
        "metadata": {
            "name": "web",
            "namespace": "metrics-c",
            "uid": "u",
            "resourceVersion": "1",
            "deletionTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": {},
    }
    controller = ServingController(
        kube=cast(Kube, RecordingKube()),
        config=OperatorConfig(),
        services=lambda _key: [deleting],
        deployments=lambda _key: (),
        failures=lambda _key: (),
    )
    asyncio.run(controller.reconcile(("metrics-c", "web")))
    assert exported("metrics-c", "web") == []


def test_a_validation_report_replaces_the_previous_candidates_figures() -> None:
    results = [
        {
            "name": "labels",
            "source": "shadow",
            "samples": 1000,
            "adjusted": 0.95,
            "noiseFloor": 0.02,
        },
        {"name": "scores", "source": "replay", "samples": 300, "adjusted": 1.0},
    ]
    metrics.record_validation("val-ns", "web", "aaa", results)
    series = exported("val-ns", "web")
    assert [s for s in series if s.startswith("stratus_validation_agreement")] == [
        "stratus_validation_agreement{'comparator': 'labels', 'name': 'web', "
        "'namespace': 'val-ns', 'revision': 'aaa', 'source': 'shadow'}",
        "stratus_validation_agreement{'comparator': 'scores', 'name': 'web', "
        "'namespace': 'val-ns', 'revision': 'aaa', 'source': 'replay'}",
    ]
    assert len([s for s in series if s.startswith("stratus_validation_noise_floor")]) == 1
    metrics.record_validation("val-ns", "web", "bbb", results[:1])
    series = exported("val-ns", "web")
    assert not [s for s in series if "'aaa'" in s]
    assert len([s for s in series if s.startswith("stratus_validation_samples")]) == 1
    metrics.forget_inferenceservice("val-ns", "web")
    assert exported("val-ns", "web") == []
