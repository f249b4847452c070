"""Idle reclamation in the serving controller: its Prometheus must be one the admin allowed,
the DCGM query names the service's own pods, and the readings are taken at most every
IDLE_CHECK seconds, never while the service is held."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

import pytest

from stratus.api.inferenceservice import InferenceServiceSpec
from stratus.config import OperatorConfig
from stratus.kube import Kube
from stratus.podspec import Owner
from stratus.serving import planner
from stratus.serving.controller import ServingController
from stratus.serving.revision import revision_of
from stratus.serving.views import DeploymentView
from tests.unit.test_serving_analysis import RecordingKube

NOW = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)


class Prometheus(ThreadingHTTPServer):
    """Answers every instant query with one series at `value`; remembers the queries."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Answer)
        self.queries: list[str] = []
        self.value = "3"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Answer(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        server = cast(Prometheus, self.server)
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)["query"][0]
        server.queries.append(query)
        result = [{"metric": {"pod": "p"}, "value": [1.0, server.value]}]
        body = json.dumps(
            {"status": "success", "data": {"resultType": "vector", "result": result}}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def prometheus() -> Iterator[Prometheus]:
    server = Prometheus()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def setup(
    address: str, allowed: tuple[str, ...], held: bool = False
) -> tuple[ServingController, str]:
    """A controller over one idle-reclaimed service; and its revision."""
    raw = {
        "image": "serve:1",
        "model": {"uri": "https://m/x"},
        "replicas": {"min": 2, "max": 2},
        "idle": {"after": "30m", "gpuUtilizationBelow": 10, "prometheusAddress": address},
    }
    spec = InferenceServiceSpec.model_validate(raw)
    revision = revision_of(spec)
    deployments = (DeploymentView(f"web-{revision}", revision, 2, 2),)
    status = planner.plan(
        planner.Observed(
            owner=Owner("InferenceService", "web", "team-a", "u"),
            generation=1,
            spec=spec,
            status={},
            annotations={},
            deployments=deployments,
            staging_failures=(),
            now=NOW,
            staging_image="img",
        )
    ).status
    if held:
        status["schedule"]["held"] = True
    obj = {
        "apiVersion": "stratus.dev/v1alpha1",
        "kind": "InferenceService",
        "metadata": {
            "name": "web",
            "namespace": "team-a",
            "uid": "u",
            "resourceVersion": "1",
            "generation": 1,
        },
        "spec": raw,
        "status": status,
    }
    controller = ServingController(
        kube=cast(Kube, RecordingKube()),
        config=OperatorConfig(prometheus_addresses=allowed),
        services=lambda _key: [obj],
        deployments=lambda _key: deployments,
        failures=lambda _key: [],
        clock=lambda: NOW,
    )
    return controller, revision


def written(controller: ServingController) -> dict[str, Any]:
    kube = cast(RecordingKube, controller.kube)
    [args] = [args for name, args in kube.calls if name == "patch_status"]
    return cast(dict[str, Any], args[-1])


def test_an_idle_prometheus_the_admin_did_not_allow_is_never_asked(
    prometheus: Prometheus,
) -> None:
    controller, _ = setup(prometheus.url, allowed=("http://prometheus.monitoring:9090",))
    asyncio.run(controller.reconcile(("team-a", "web")))
    assert prometheus.queries == []
    [healthy] = [c for c in written(controller)["conditions"] if c["type"] == "Healthy"]
    assert healthy["reason"] == "PrometheusAddressNotAllowed"
    assert healthy["message"].startswith("spec.idle.prometheusAddress ")


def test_the_gpu_reading_names_the_services_own_pods_and_is_not_repeated_at_once(
    prometheus: Prometheus,
) -> None:
    controller, revision = setup(prometheus.url, allowed=(prometheus.url,))
    asyncio.run(controller.reconcile(("team-a", "web")))
    (query,) = prometheus.queries
    assert 'namespace="team-a"' in query
    assert f'pod=~"(web-{revision})-[a-z0-9]+-[a-z0-9]+"' in query
    assert written(controller)["schedule"]["idleSince"].startswith("2026-11-30T12:00:00")
    asyncio.run(controller.reconcile(("team-a", "web")))
    assert len(prometheus.queries) == 1


def test_nothing_is_read_while_held(prometheus: Prometheus) -> None:
    controller, _ = setup(prometheus.url, allowed=(prometheus.url,), held=True)
    asyncio.run(controller.reconcile(("team-a", "web")))
    assert prometheus.queries == []
