"""Canary analysis against a real Prometheus: a healthy canary is promoted, a failing one is
rolled back with the metric, value and bound named, an empty result pauses for a person."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from stratus.api.inferenceservice import InferenceServiceSpec
from stratus.serving.revision import revision_of
from tests.conftest import Cluster, free_port
from tests.e2e.test_serving import Serving, service
from tests.prometheus import METRIC, Exporter, Prometheus
from tests.support import wait_for

pytestmark = pytest.mark.usefixtures("operator")


@pytest.fixture(scope="module")
def exporter() -> Iterator[Exporter]:
    served = Exporter()
    yield served
    served.stop()


@pytest.fixture(scope="module")
def prometheus(
    exporter: Exporter, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Prometheus]:
    server = Prometheus(tmp_path_factory.mktemp("prometheus"), exporter.address, free_port())
    yield server
    server.stop()


def publish(exporter: Exporter, prometheus: Prometheus, revision: str, value: float) -> None:
    """Set the canary's error ratio and wait until Prometheus has scraped it."""
    exporter.values[revision] = value
    wait_for(
        f"Prometheus to see {revision}",
        lambda: prometheus.query(f'{METRIC}{{revision="{revision}"}} == {value}'),
    )


@pytest.fixture
def serving(cluster: Cluster, namespace: str) -> Serving:
    return Serving(cluster, namespace)


def judged(
    name: str, prometheus: Prometheus, query: str, max_value: float = 0.05
) -> dict[str, Any]:
    obj = service(name)
    obj["spec"]["rollout"] = {
        "steps": [{"weight": 50, "pause": {"duration": "2s"}}, {"weight": 100}],
        "analysis": {
            "interval": "1s",
            "failureLimit": 0,
            "inconclusiveLimit": 0,
            "prometheusAddress": prometheus.url,
            "metrics": [{"name": "error-rate", "query": query, "max": max_value}],
        },
    }
    return obj


def revision(obj: dict[str, Any], image: str) -> str:
    return revision_of(InferenceServiceSpec.model_validate({**obj["spec"], "image": image}))


QUERY = f'max({METRIC}{{revision="{{{{canary}}}}"}})'


def test_a_healthy_canary_is_promoted(
    serving: Serving, prometheus: Prometheus, exporter: Exporter
) -> None:
    obj = judged("good", prometheus, QUERY)
    serving.create(obj)
    serving.wait("good", "Healthy", lambda s: s.get("phase") == "Healthy")
    canary = revision(obj, "serve:2")
    publish(exporter, prometheus, canary, 0.01)
    serving.set_image("good", "serve:2")
    status = serving.wait(
        "good",
        "promoted",
        lambda s: s.get("stableRevision") == canary and s.get("phase") == "Healthy",
    )
    (result,) = status["lastAnalysis"]["results"]
    assert result == {"name": "error-rate", "value": 0.01, "verdict": "Passed"}


def test_a_failing_canary_is_rolled_back_naming_metric_value_and_bound(
    serving: Serving, prometheus: Prometheus, exporter: Exporter
) -> None:
    obj = judged("bad", prometheus, QUERY)
    serving.create(obj)
    stable = serving.wait("bad", "Healthy", lambda s: s.get("phase") == "Healthy")["stableRevision"]
    canary = revision(obj, "serve:broken")
    publish(exporter, prometheus, canary, 0.4)
    serving.set_image("bad", "serve:broken")
    status = serving.wait("bad", "rolled back", lambda s: s.get("phase") == "Degraded")
    assert status["abortedRevision"] == canary
    assert status["stableRevision"] == stable
    healthy = {c["type"]: c for c in status["conditions"]}["Healthy"]
    assert "error-rate = 0.4 (must be <= 0.05)" in healthy["message"]
    core = client.CoreV1Api(serving.cluster.api)
    events = core.list_namespaced_event(serving.ns, field_selector="involvedObject.name=bad")
    assert any(e.reason == "RolledBack" and "0.4" in e.message for e in events.items)


def test_an_empty_result_pauses_for_a_person(serving: Serving, prometheus: Prometheus) -> None:
    obj = judged("quiet", prometheus, 'max(absent_metric_for_stratus{revision="{{canary}}"})')
    serving.create(obj)
    serving.wait("quiet", "Healthy", lambda s: s.get("phase") == "Healthy")
    serving.set_image("quiet", "serve:2")
    status = serving.wait("quiet", "paused", lambda s: s.get("phase") == "Paused")
    assert status["lastAnalysis"]["results"][0]["verdict"] == "Inconclusive"
    assert status["canaryRevision"] == revision(obj, "serve:2")
