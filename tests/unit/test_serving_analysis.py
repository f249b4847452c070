"""Canary analysis against a hostile Prometheus on a loopback port: whatever it does (drips,
floods, truncates, redirects, rambles), a query ends within its deadline and its byte bound as
an inconclusive measurement, and an InferenceService cannot make the operator call an address
the admin did not give it."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import resource
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

import pytest

from stratus.api.inferenceservice import AnalysisMetric, InferenceServiceSpec
from stratus.config import OperatorConfig
from stratus.kube import Kube
from stratus.podspec import Owner
from stratus.serving import planner, prometheus
from stratus.serving.controller import ServingController
from stratus.serving.revision import revision_of
from stratus.serving.views import DeploymentView

ERRORS = AnalysisMetric(name="errors", query="rate(x[1m])", max=0.05)
DEADLINE = 2.0
HUGE = 100 << 20
# How often and how long a dripping server sends one more byte.
DRIP_EVERY = 0.5
DRIP_FOR = 30.0


class Hostile(ThreadingHTTPServer):
    """Behaves as the request path's first segment says; remembers every path asked for."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.seen: list[str] = []
        # behaviour -> (HTTP status, body) for plain answers
        self.answers: dict[str, tuple[int, bytes]] = {}
        self.stopping = threading.Event()

    def url(self, behaviour: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{behaviour}"


class Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    @property
    def hostile(self) -> Hostile:
        return cast(Hostile, self.server)

    def do_GET(self) -> None:
        self.hostile.seen.append(self.path)
        behaviour = self.path.split("/")[1]
        if behaviour in self.hostile.answers:
            status, body = self.hostile.answers[behaviour]
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        BEHAVIOURS[behaviour](self)

    def drip(self, data: bytes) -> None:
        """One byte of `data` every DRIP_EVERY seconds, for DRIP_FOR at most, until cut off."""
        for _ in range(int(DRIP_FOR / DRIP_EVERY)):
            if self.hostile.stopping.is_set():
                return
            try:
                self.wfile.write(data[:1])
            except OSError:
                return
            data = data[1:] or data
            time.sleep(DRIP_EVERY)

    def drip_body(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.drip(b" ")

    def drip_headers(self) -> None:
        self.wfile.write(b"HTTP/1.0 200 OK\r\n")
        self.drip(b"X-Slow: " + b"a" * 10_000)

    def flood(self, framing: str) -> None:
        """HUGE bytes from one small buffer, so the server's memory stays flat."""
        self.send_response(200)
        chunk = b" " * (64 << 10)
        if framing == "length":
            self.send_header("Content-Length", str(HUGE))
        elif framing == "chunked":
            self.send_header("Transfer-Encoding", "chunked")
            chunk = b"%x\r\n%s\r\n" % (len(chunk), chunk)
        self.end_headers()
        for _ in range(HUGE // len(chunk)):
            if self.hostile.stopping.is_set():
                return
            try:
                self.wfile.write(chunk)
            except OSError:
                return

    def truncated(self) -> None:
        body = b'{"status": "success", "data": {"resultType": "vector", "result": ['
        self.send_response(200)
        self.send_header("Content-Length", str(len(body) + 1000))
        self.end_headers()
        self.wfile.write(body)  # and the connection closes: HTTP/1.0

    def redirect(self) -> None:
        self.send_response(302)
        self.send_header("Location", "/target/api/v1/query?query=up")
        self.send_header("Content-Length", "0")
        self.end_headers()


BEHAVIOURS: dict[str, Callable[[Handler], None]] = {
    "drip-body": Handler.drip_body,
    "drip-headers": Handler.drip_headers,
    "flood": lambda h: h.flood("close"),
    "flood-with-length": lambda h: h.flood("length"),
    "flood-chunked": lambda h: h.flood("chunked"),
    "truncated": Handler.truncated,
    "redirect": Handler.redirect,
}


@pytest.fixture
def hostile() -> Iterator[Hostile]:
    server = Hostile()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    try:
        yield server
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def vector(*values: str) -> bytes:
    result = [{"metric": {"pod": f"p{i}"}, "value": [1.0, v]} for i, v in enumerate(values)]
    doc = {"status": "success", "data": {"resultType": "vector", "result": result}}
    return json.dumps(doc).encode()


def measure(address: str, metric: AnalysisMetric = ERRORS) -> planner.Measurement:
    return prometheus.measure(address, metric, {}, deadline=DEADLINE)


@pytest.mark.parametrize("behaviour", ["drip-body", "drip-headers"])
def test_a_slow_drip_is_cut_off_at_the_deadline(hostile: Hostile, behaviour: str) -> None:
    started = time.monotonic()
    m = measure(hostile.url(behaviour))
    elapsed = time.monotonic() - started
    assert (m.verdict, m.error) == ("Inconclusive", f"no answer within {DEADLINE:g} s")
    assert DEADLINE - 0.5 < elapsed < DEADLINE + 2


@pytest.mark.parametrize("behaviour", ["flood", "flood-with-length", "flood-chunked"])
def test_a_huge_body_is_not_read_past_the_bound(hostile: Hostile, behaviour: str) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    m = measure(hostile.url(behaviour))
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert (m.verdict, m.error) == ("Inconclusive", "response larger than 1 MiB")
    assert grown < 20 << 10


def test_a_body_shorter_than_its_length_is_inconclusive(hostile: Hostile) -> None:
    m = measure(hostile.url("truncated"))
    assert m.verdict == "Inconclusive"
    assert m.error.startswith("query failed: IncompleteRead")


def test_a_redirect_is_not_followed(hostile: Hostile) -> None:
    m = measure(hostile.url("redirect"))
    assert (m.verdict, m.error) == ("Inconclusive", "redirects are not followed (HTTP 302)")
    assert [p.split("?")[0] for p in hostile.seen] == ["/redirect/api/v1/query"]


def test_every_series_is_judged_and_the_worst_reported(hostile: Hostile) -> None:
    hostile.answers["failing"] = (200, vector("0.01", "0.2", "0.03"))
    hostile.answers["passing"] = (200, vector("0.01", "NaN", "0.04"))
    hostile.answers["empty"] = (200, vector())
    hostile.answers["all-nan"] = (200, vector("NaN"))
    failing = measure(hostile.url("failing"))
    assert (failing.verdict, failing.value) == ("Failed", 0.2)
    passing = measure(hostile.url("passing"))
    assert (passing.verdict, passing.value) == ("Passed", 0.04)
    floor = AnalysisMetric(name="success", query="x", min=0.9, max=1.0)
    low = measure(hostile.url("failing"), floor)
    assert (low.verdict, low.value) == ("Failed", 0.01)
    for nothing in ("empty", "all-nan"):
        m = measure(hostile.url(nothing))
        assert (m.verdict, m.error) == ("Inconclusive", "no data")


def test_what_prometheus_says_reaches_the_status_as_one_short_line(hostile: Hostile) -> None:
    rambling = {"status": "error", "error": "bad\nquery\x1b[31m" + "x" * 10_000}
    hostile.answers["error"] = (400, json.dumps(rambling).encode())
    hostile.answers["html"] = (200, b"<html>" + b"y" * 10_000)
    hostile.answers["matrix"] = (
        200,
        json.dumps(
            {"status": "success", "data": {"resultType": "matrix", "result": [{"values": []}]}}
        ).encode(),
    )
    error = measure(hostile.url("error"))
    assert error.verdict == "Inconclusive"
    assert error.error.startswith("query failed: bad query [31mxxx")
    assert len(error.error) == prometheus.MESSAGE_CHARS
    html = measure(hostile.url("html"))
    assert html.error == "query failed: HTTP 200, not a Prometheus API answer"
    matrix = measure(hostile.url("matrix"))
    assert matrix.error == "unexpected result: not one number per series"


def test_an_unreachable_prometheus_is_inconclusive() -> None:
    with socket.socket() as bound:  # bound but not listening: connections are refused
        bound.bind(("127.0.0.1", 0))
        m = measure(f"http://127.0.0.1:{bound.getsockname()[1]}")
    assert m.verdict == "Inconclusive"
    assert m.error.startswith("query failed: ")


# -- the controller: which address a resource may make the operator query --------------------


class RecordingKube:
    """The Kube calls a reconcile makes, recorded and answered with nothing."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, name: str) -> Callable[..., Any]:
        async def call(*args: Any) -> None:
            self.calls.append((name, args))

        def event(*args: Any) -> None:
            self.calls.append((name, args))

        return event if name == "event" else call


def canary_obj(address: str | None) -> tuple[dict[str, Any], tuple[DeploymentView, ...]]:
    """An InferenceService whose ready canary is due to be measured."""

    def spec(image: str) -> dict[str, Any]:
        analysis: dict[str, Any] = {
            "interval": "30s",
            "metrics": [ERRORS.model_dump(exclude_none=True)],
        }
        if address is not None:
            analysis["prometheusAddress"] = address
        return {
            "image": image,
            "model": {"uri": "https://m/x"},
            "replicas": {"min": 10, "max": 10},
            "rollout": {"steps": [{"weight": 20}, {"weight": 100}], "analysis": analysis},
        }

    old, new = (InferenceServiceSpec.model_validate(spec(i)) for i in ("serve:1", "serve:2"))
    stable, canary = revision_of(old), revision_of(new)
    status = planner.plan(observed(old, {}, ())).status
    status = planner.plan(observed(new, status, views(stable, 10))).status
    obj = {
        "apiVersion": "stratus.dev/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": "web", "namespace": "ns", "uid": "u", "resourceVersion": "1"},
        "spec": spec("serve:2"),
        "status": status,
    }
    return obj, views(stable, 8) + views(canary, 2)


def views(revision: str, ready: int) -> tuple[DeploymentView, ...]:
    return (DeploymentView(f"web-{revision}", revision, ready, ready),)


def observed(
    spec: InferenceServiceSpec, status: dict[str, Any], deployments: tuple[DeploymentView, ...]
) -> planner.Observed:
    return planner.Observed(
        owner=Owner("InferenceService", "web", "ns", "u"),
        generation=1,
        spec=spec,
        status=status,
        annotations={},
        deployments=deployments,
        staging_failures=(),
        now=dt.datetime.now(dt.UTC),
        staging_image="img",
    )


def reconcile(config: OperatorConfig, address: str | None) -> RecordingKube:
    obj, deployments = canary_obj(address)
    kube = RecordingKube()
    controller = ServingController(
        kube=cast(Kube, kube),
        config=config,
        services=lambda _key: [obj],
        deployments=lambda _key: deployments,
        failures=lambda _key: [],
    )
    asyncio.run(controller.reconcile(("ns", "web")))
    return kube


def written_status(kube: RecordingKube) -> dict[str, Any]:
    [args] = [args for name, args in kube.calls if name == "patch_status"]
    return cast(dict[str, Any], args[-1])


def test_an_allowed_address_is_queried_as_the_admin_wrote_it(hostile: Hostile) -> None:
    hostile.answers["mine"] = (200, vector("0.01"))
    # The same address, spelled differently (a trailing slash).
    config = OperatorConfig(prometheus_addresses=(hostile.url("mine") + "/",))
    kube = reconcile(config, hostile.url("mine"))
    assert [p.split("?")[0] for p in hostile.seen] == ["/mine/api/v1/query"]
    results = written_status(kube)["lastAnalysis"]["results"]
    assert results == [{"name": "errors", "verdict": "Passed", "value": 0.01}]


def test_an_address_the_admin_did_not_give_is_never_contacted(hostile: Hostile) -> None:
    hostile.answers["mine"] = (200, vector("0.01"))
    config = OperatorConfig(prometheus_addresses=(hostile.url("mine"),))
    kube = reconcile(config, hostile.url("elsewhere"))
    assert hostile.seen == []
    assert [name for name, _ in kube.calls] == ["patch_status"]
    [condition] = [c for c in written_status(kube)["conditions"] if c["type"] == "Healthy"]
    assert (condition["type"], condition["status"], condition["reason"]) == (
        "Healthy",
        "False",
        "PrometheusAddressNotAllowed",
    )
    assert condition["message"] == (
        f"spec.rollout.analysis.prometheusAddress {hostile.url('elsewhere')} is not one of the "
        "operator's allowed Prometheus addresses (set by the cluster admin)"
    )
