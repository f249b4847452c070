"""Canary analysis against a real Prometheus: a healthy canary is promoted, a failing one is
rolled back with the metric, value and bound named, an empty result pauses for a person."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from stratus.api.inferenceservice import InferenceServiceSpec
from stratus.serving.revision import revision_of
from tests.conftest import Cluster
from tests.e2e.test_serving import Serving, service
from tests.prometheus import ERROR_RATE, P99_LATENCY, Exporter, Prometheus
from tests.support import wait_for

pytestmark = pytest.mark.usefixtures("operator")


def publish(
    exporter: Exporter,
    prometheus: Prometheus,
    revision: str,
    error_rate: float,
    latency: float = 0.08,
) -> None:
    """Serve the revision's traffic and wait until Prometheus can compute its rates."""
    exporter.set(revision, error_rate, latency)
    query = ERROR_RATE.replace("{{canary}}", revision)
    wait_for(f"Prometheus to rate {revision}", lambda: prometheus.query(query), timeout=30)


@pytest.fixture
def serving(cluster: Cluster, namespace: str) -> Serving:
    return Serving(cluster, namespace)


def judged(
    name: str,
    prometheus: Prometheus,
    metrics: list[dict[str, Any]] | None = None,
    steps: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """An InferenceService gated on the canary's error rate and p99 latency."""
    obj = service(name)
    obj["spec"]["rollout"] = {
        "steps": steps
        or [
            {"weight": 20, "pause": {"duration": "2s"}},
            {"weight": 50, "pause": {"duration": "2s"}},
            {"weight": 100},
        ],
        "analysis": {
            "interval": "1s",
            "failureLimit": 0,
            "inconclusiveLimit": 0,
            "prometheusAddress": prometheus.url,
            "metrics": metrics
            or [
                {"name": "error-rate", "query": ERROR_RATE, "max": 0.05},
                {"name": "p99-latency-seconds", "query": P99_LATENCY, "max": 0.5},
            ],
        },
    }
    return obj


def revision(obj: dict[str, Any], image: str) -> str:
    return revision_of(InferenceServiceSpec.model_validate({**obj["spec"], "image": image}))


def test_a_healthy_canary_walks_every_step_and_is_promoted(
    serving: Serving, prometheus: Prometheus, exporter: Exporter
) -> None:
    obj = judged("good", prometheus)
    serving.create(obj)
    serving.wait("good", "Healthy", lambda s: s.get("phase") == "Healthy")
    canary = revision(obj, "serve:2")
    publish(exporter, prometheus, canary, error_rate=0.01)
    serving.set_image("good", "serve:2")
    status = serving.wait(
        "good",
        "promoted",
        lambda s: s.get("stableRevision") == canary and s.get("phase") == "Healthy",
    )
    results = {r["name"]: r for r in status["lastAnalysis"]["results"]}
    assert results["error-rate"]["verdict"] == "Passed"
    assert results["error-rate"]["value"] == pytest.approx(0.01, abs=0.005)
    assert results["p99-latency-seconds"]["value"] < 0.1
    core = client.CoreV1Api(serving.cluster.api)
    expected = [
        f"canary {canary} at 100% (step 3 of 3)",
        f"canary {canary} at 50% (step 2 of 3)",
    ]
    # Events follow the status write that they describe.
    wait_for(
        "a StepAdvanced event per step",
        lambda: (
            sorted(
                e.message
                for e in core.list_namespaced_event(
                    serving.ns, field_selector="involvedObject.name=good"
                ).items
                if e.reason == "StepAdvanced"
            )
            == expected
        ),
    )


def test_a_canary_with_20_percent_errors_is_rolled_back_at_its_first_analysis(
    serving: Serving, prometheus: Prometheus, exporter: Exporter
) -> None:
    obj = judged("bad", prometheus)
    serving.create(obj)
    stable = serving.wait("bad", "Healthy", lambda s: s.get("phase") == "Healthy")["stableRevision"]
    canary = revision(obj, "serve:broken")
    publish(exporter, prometheus, canary, error_rate=0.2)
    serving.set_image("bad", "serve:broken")
    status = serving.wait("bad", "rolled back", lambda s: s.get("phase") == "Degraded")
    assert (status["abortedRevision"], status["stableRevision"]) == (canary, stable)
    assert status["lastAnalysis"]["failures"] == 1
    healthy = {c["type"]: c for c in status["conditions"]}["Healthy"]
    assert healthy["reason"] == "RolledBack"
    assert "error-rate = 0.2 (must be <= 0.05)" in healthy["message"]
    core = client.CoreV1Api(serving.cluster.api)
    # Events follow the status write that they describe.
    wait_for(
        "the RolledBack event",
        lambda: any(
            e.reason == "RolledBack" and "0.2" in e.message
            for e in core.list_namespaced_event(
                serving.ns, field_selector="involvedObject.name=bad"
            ).items
        ),
    )
    wait_for("canary scaled to zero", lambda: serving.replicas("bad") == {stable: 4, canary: 0})


def test_a_slow_canary_fails_on_p99_latency(
    serving: Serving, prometheus: Prometheus, exporter: Exporter
) -> None:
    obj = judged("slow", prometheus)
    serving.create(obj)
    serving.wait("slow", "Healthy", lambda s: s.get("phase") == "Healthy")
    canary = revision(obj, "serve:slow")
    publish(exporter, prometheus, canary, error_rate=0.0, latency=0.8)
    serving.set_image("slow", "serve:slow")
    status = serving.wait("slow", "rolled back", lambda s: s.get("phase") == "Degraded")
    healthy = {c["type"]: c for c in status["conditions"]}["Healthy"]
    assert "p99-latency-seconds" in healthy["message"]
    assert "must be <= 0.5" in healthy["message"]


def test_an_empty_result_pauses_for_a_person(serving: Serving, prometheus: Prometheus) -> None:
    missing = [
        {
            "name": "error-rate",
            "max": 0.05,
            "query": 'sum(rate(no_such_metric{revision="{{canary}}"}[5s]))',
        }
    ]
    obj = judged("quiet", prometheus, metrics=missing)
    serving.create(obj)
    serving.wait("quiet", "Healthy", lambda s: s.get("phase") == "Healthy")
    serving.set_image("quiet", "serve:2")
    status = serving.wait("quiet", "paused", lambda s: s.get("phase") == "Paused")
    assert status["lastAnalysis"]["results"][0]["verdict"] == "Inconclusive"
    assert status["canaryRevision"] == revision(obj, "serve:2")
