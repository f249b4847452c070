"""A real canary on the real node: the example model server (examples/serve) runs in containers,
its model is staged by the real init container from an HTTPS server with a private CA, a real
Prometheus scrapes the pods, and real requests through the Service's ClusterIP show where the
traffic went. A revision that fails 20% of its requests is rolled back on its error ratio; a good
one walks its steps, each step's traffic following its weight, and is promoted."""

from __future__ import annotations

import hashlib
import http.client
import http.server
import json
import math
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from stratus.api.common import GROUP, VERSION
from stratus.serving.labels import INFERENCESERVICE_LABEL, REVISION_LABEL
from tests import tls
from tests.conftest import Cluster
from tests.e2e.test_serving import Serving
from tests.prometheus import Prometheus, write_targets
from tests.support import needs_real_node, wait_for

pytestmark = pytest.mark.usefixtures("operator")
NAME = "iris"
IMAGE = "localhost/stratus/model-server:dev"
PORT = 8080
CA_CONFIG_MAP = "model-ca"
# A model of the test's own, not the image's built-in one: its answers prove that the staged file
# is what the pods serve.
MODEL = {
    "format": "stratus.dev/linear-classifier/v1",
    "classes": ["small", "large"],
    "coef": [[1.0, 1.0, 1.0, 1.0]],
    "intercept": [-10.0],
}
BODY = json.dumps({"instances": [[1.0, 1.0, 1.0, 1.0], [5.0, 5.0, 5.0, 5.0]]}).encode()
PREDICTIONS = ["small", "large"]
ERROR_RATIO = (
    'sum(rate(model_request_errors_total{namespace="{{namespace}}",revision="{{canary}}"}[10s]))'
    ' / sum(rate(model_requests_total{namespace="{{namespace}}",revision="{{canary}}"}[10s]))'
)
MAX_ERROR_RATIO = 0.05
WEIGHTS = (25, 50, 100)  # with 4 replicas, each weight is an exact replica ratio
PAUSE = "15s"  # counted from when the step's split stands, so the canary's start-up is not in it
RATE = 40.0  # requests a second
POLL = 0.25  # seconds between looks at the status and the pods
# A split counts once it has held this long (the EndpointSlice and kube-proxy follow a pod's
# readiness within about a second), and until LAG before the next was seen (a change is seen up
# to a poll and its two API calls late).
SETTLE = 1.5
LAG = 2 * POLL
# A step's settled window is its pause less SETTLE and LAG: some 13 s, 500 requests, where a 50%
# share has a standard deviation of 2.2 points. Fewer than 150 (4 points) would make 10 points
# a coin toss of the sampling, not a measurement.
MIN_PER_STEP = 150
TOLERANCE = 10.0  # percentage points


def env(revision: str, fail_ratio: str) -> list[dict[str, str]]:
    return [{"name": "REVISION", "value": revision}, {"name": "FAIL_RATIO", "value": fail_ratio}]


def inference_service(model_uri: str, sha256: str, prometheus: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "InferenceService",
        "metadata": {"name": NAME},
        "spec": {
            "image": IMAGE,
            "env": env("v1", "0"),
            "model": {"uri": model_uri, "sha256": sha256, "caConfigMap": CA_CONFIG_MAP},
            "port": PORT,
            "readinessPath": "/healthz",
            # No GPU: the real node advertises two, and a canary needs up to six pods at once.
            "resources": {"gpu": 0, "cpu": "100m", "memory": "128Mi"},
            "replicas": {"min": 4, "max": 4},
            "rollout": {
                "steps": [{"weight": w, "pause": {"duration": PAUSE}} for w in WEIGHTS],
                "analysis": {
                    "interval": "2s",
                    "failureLimit": 0,
                    # Until Prometheus has two scrapes of a new canary its ratio is empty.
                    "inconclusiveLimit": 10,
                    "prometheusAddress": prometheus,
                    "metrics": [
                        {"name": "error-ratio", "query": ERROR_RATIO, "max": MAX_ERROR_RATIO}
                    ],
                },
            },
            # The images are on the node already; nothing is pulled from anywhere.
            "podTemplate": {
                "spec": {
                    "containers": [{"name": "server", "imagePullPolicy": "Never"}],
                    "initContainers": [{"name": "stage-model", "imagePullPolicy": "Never"}],
                }
            },
        },
    }


class ModelFiles:
    """model.json over HTTPS on the node's bridge address (where pods reach the host), with a
    certificate from a throwaway CA; counts the downloads."""

    def __init__(self, node_ip: str, workdir: Path) -> None:
        self.body = json.dumps(MODEL).encode()
        self.sha256 = hashlib.sha256(self.body).hexdigest()
        self.tls = tls.issue(workdir, node_ip)
        self.downloads = 0
        lock = threading.Lock()
        files = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != "/model.json":
                    self.send_error(404)
                    return
                with lock:
                    files.downloads += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(files.body)))
                self.end_headers()
                self.wfile.write(files.body)

            def log_message(self, *_: object) -> None:
                return

        self.server = tls.serve_https(node_ip, Handler, self.tls)
        self.uri = f"https://{node_ip}:{self.server.server_address[1]}/model.json"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass(frozen=True)
class Split:
    """What the status said and which pods were ready, as first seen at `since` (monotonic)."""

    since: float
    step: int | None
    weight: int
    canary: str | None
    stable: str | None
    # Ready pods that are not terminating, by revision: the endpoints kube-proxy balances over.
    ready: tuple[tuple[str, int], ...]

    def key(self) -> tuple[Any, ...]:
        return (self.step, self.weight, self.canary, self.stable, self.ready)

    def achieved(self) -> float:
        """The canary's share of the ready replicas, in percent."""
        total = sum(n for _, n in self.ready)
        return 100.0 * dict(self.ready).get(self.canary or "", 0) / total if total else 0.0


def _ready(pod: Any) -> bool:
    if pod.metadata.deletion_timestamp is not None:
        return False
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


class Observer:
    """Polls the InferenceService's status and its pods: records each new Split, and keeps
    Prometheus's file of pod targets current (pod IP:port, labelled with the revision; Debian's
    Prometheus is built without kubernetes_sd). Stops by itself after `limit` seconds."""

    def __init__(self, cluster: Cluster, namespace: str, targets: Path, limit: float) -> None:
        self.core = client.CoreV1Api(cluster.api)
        self.custom = client.CustomObjectsApi(cluster.api)
        self.namespace = namespace
        self.targets = targets
        self.splits: list[Split] = []
        self.nodes: set[str] = set()
        self.last_error = ""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._deadline = time.monotonic() + limit
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def current(self) -> int:
        """Index of the latest Split; -1 before the first."""
        with self._lock:
            return len(self.splits) - 1

    def latest(self) -> Split | None:
        with self._lock:
            return self.splits[-1] if self.splits else None

    def snapshot(self) -> list[Split]:
        with self._lock:
            return list(self.splits)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        written: list[tuple[str, dict[str, str]]] | None = None
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            try:
                obj = self.custom.get_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, "inferenceservices", NAME
                )
                pods = self.core.list_namespaced_pod(
                    self.namespace, label_selector=f"{INFERENCESERVICE_LABEL}={NAME}"
                ).items
            except (ApiException, HTTPError, OSError) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                self._stop.wait(POLL)
                continue
            targets = sorted(
                (
                    f"{p.status.pod_ip}:{PORT}",
                    {
                        "namespace": self.namespace,
                        "pod": p.metadata.name,
                        "revision": p.metadata.labels.get(REVISION_LABEL, ""),
                    },
                )
                for p in pods
                if p.status.pod_ip
            )
            if targets != written:
                write_targets(self.targets, targets)
                written = targets
            self.nodes |= {p.spec.node_name for p in pods if p.spec.node_name}
            ready: dict[str, int] = {}
            for pod in filter(_ready, pods):
                revision = pod.metadata.labels.get(REVISION_LABEL, "")
                ready[revision] = ready.get(revision, 0) + 1
            status = obj.get("status") or {}
            split = Split(
                since=time.monotonic(),
                step=status.get("currentStep"),
                weight=status.get("canaryWeight") or 0,
                canary=status.get("canaryRevision"),
                stable=status.get("stableRevision"),
                ready=tuple(sorted(ready.items())),
            )
            with self._lock:
                if not self.splits or self.splits[-1].key() != split.key():
                    self.splits.append(split)
            self._stop.wait(POLL)


@dataclass(frozen=True)
class Answer:
    sent: float  # monotonic
    split: int  # index of the Split current when the request was sent
    revision: str | None  # the X-Revision header; None when nothing answered
    code: int | None
    predictions_ok: bool
    error: str = ""


class Load:
    """POST /predict through the Service's ClusterIP, RATE a second, each request on a new
    connection: kube-proxy picks a backend per connection, so the answers sample the split.
    Stops by itself after `limit` seconds (at most RATE * limit requests)."""

    def __init__(self, cluster_ip: str, observer: Observer, limit: float) -> None:
        self.cluster_ip = cluster_ip
        self.observer = observer
        self.limit = limit
        self.answers: list[Answer] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> list[Answer]:
        self._stop.set()
        self._thread.join(timeout=15)
        return list(self.answers)

    def _run(self) -> None:
        start = time.monotonic()
        for n in range(int(RATE * self.limit)):
            due = start + n / RATE
            if self._stop.wait(max(0.0, due - time.monotonic())):
                return
            if time.monotonic() - start > self.limit:
                return
            self.answers.append(self._send())

    def _send(self) -> Answer:
        sent, split = time.monotonic(), self.observer.current()
        conn = http.client.HTTPConnection(self.cluster_ip, 80, timeout=5)
        try:
            conn.request(
                "POST",
                "/predict",
                body=BODY,
                headers={"Content-Type": "application/json", "Connection": "close"},
            )
            resp = conn.getresponse()
            payload = resp.read()
            ok = resp.status == 200 and json.loads(payload).get("predictions") == PREDICTIONS
            return Answer(sent, split, resp.getheader("X-Revision"), resp.status, ok)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            return Answer(sent, split, None, None, False, f"{type(exc).__name__}: {exc}")
        finally:
            conn.close()


@dataclass(frozen=True)
class StepShare:
    step: int
    weight: int
    requests: int
    canary_answers: int

    @property
    def share(self) -> float:
        return 100.0 * self.canary_answers / self.requests if self.requests else math.nan


def step_shares(
    answers: list[Answer], splits: list[Split], canary: str, canary_name: str
) -> list[StepShare]:
    """Per step, the share of answers from the canary, over the requests sent while the status
    showed that step and the ready replicas matched its weight, once that had settled."""
    ends = [s.since for s in splits[1:]] + [math.inf]
    shares = []
    for step, weight in enumerate(WEIGHTS):
        counted = [
            a
            for a in answers
            if a.revision is not None
            and a.split >= 0
            and splits[a.split].canary == canary
            and splits[a.split].step == step
            and abs(splits[a.split].achieved() - weight) < 0.5
            and a.sent - splits[a.split].since >= SETTLE
            and ends[a.split] - a.sent >= LAG
        ]
        shares.append(
            StepShare(step, weight, len(counted), sum(a.revision == canary_name for a in counted))
        )
    return shares


def node_ip(cluster: Cluster, node: str) -> str:
    addresses = client.CoreV1Api(cluster.api).read_node(node).status.addresses or []
    return next(str(a.address) for a in addresses if a.type == "InternalIP")


@pytest.fixture
def model_files(cluster: Cluster, real_node: str, tmp_path: Path) -> Iterator[ModelFiles]:
    if cluster.state_dir is None:
        needs_real_node("the model is served from the local real node's bridge address")
    files = ModelFiles(node_ip(cluster, real_node), tmp_path / "model-ca")
    yield files
    files.stop()


@pytest.fixture
def pod_prometheus(tmp_path: Path, prometheus_ports: tuple[int, int]) -> Iterator[Prometheus]:
    """The pods' Prometheus, on the second of the ports the operator allows."""
    workdir = tmp_path / "prometheus"
    workdir.mkdir()
    server = Prometheus(workdir, None, prometheus_ports[1], file_sd=workdir / "pods.json")
    yield server
    server.stop()


def patch_env(serving: Serving, revision: str, fail_ratio: str) -> None:
    serving.custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        serving.ns,
        "inferenceservices",
        NAME,
        {"spec": {"env": env(revision, fail_ratio)}},
    )


def get_json(cluster_ip: str, path: str) -> dict[str, Any] | None:
    """The Service's JSON answer; None until kube-proxy routes to a ready pod."""
    conn = http.client.HTTPConnection(cluster_ip, 80, timeout=5)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        answer: dict[str, Any] = json.loads(conn.getresponse().read())
        return answer
    except (OSError, http.client.HTTPException, ValueError):
        return None
    finally:
        conn.close()


def timeline(observer: Observer) -> str:
    """The splits seen, one a line, for failure messages."""
    splits = observer.snapshot()
    start = splits[0].since if splits else 0.0
    lines = [
        f"  +{s.since - start:6.1f}s step={s.step} weight={s.weight} canary={s.canary} "
        f"stable={s.stable} ready={dict(s.ready)}"
        for s in splits
    ]
    if observer.last_error:
        lines.append(f"  last error polling the cluster: {observer.last_error}")
    return "\n".join(lines)


def run_until(
    load: Load, serving: Serving, what: str, check: Callable[[dict[str, Any]], bool], timeout: float
) -> tuple[dict[str, Any], list[Answer]]:
    """Wait for the status `check` accepts while `load` runs; the load stops either way."""
    try:
        status = serving.wait(NAME, what, check, timeout=timeout)
    finally:
        answers = load.stop()
    return status, answers


def test_a_real_canary_is_rolled_back_on_errors_and_a_good_one_follows_its_weights(
    cluster: Cluster,
    namespace: str,
    real_node: str,
    model_files: ModelFiles,
    pod_prometheus: Prometheus,
) -> None:
    serving = Serving(cluster, namespace)
    core = client.CoreV1Api(cluster.api)
    core.create_namespaced_config_map(
        namespace,
        {"metadata": {"name": CA_CONFIG_MAP}, "data": {"ca.crt": model_files.tls.ca.read_text()}},
    )
    serving.create(inference_service(model_files.uri, model_files.sha256, pod_prometheus.url))
    assert pod_prometheus.file_sd is not None
    observer = Observer(cluster, namespace, pod_prometheus.file_sd, limit=900)
    try:
        stable_v1(serving, core, observer, model_files, pod_prometheus)
        bad_rolled_back(serving, core, observer)
        good_promoted(serving, core, observer)
        assert observer.nodes == {real_node}, "a model server ran outside the real node"
    finally:
        observer.stop()


def service_ip(core: client.CoreV1Api, namespace: str) -> str:
    return str(core.read_namespaced_service(NAME, namespace).spec.cluster_ip)


def stable_v1(
    serving: Serving,
    core: client.CoreV1Api,
    observer: Observer,
    model_files: ModelFiles,
    prometheus: Prometheus,
) -> None:
    """The first revision goes straight to stable, serving the model staged over TLS."""
    status = serving.wait(NAME, "v1 stable and ready", lambda s: s.get("phase") == "Healthy", 240)
    v1 = status["stableRevision"]
    assert status["readyReplicas"] == 4
    # Each pod's init container downloaded the model, trusting only the private CA.
    assert model_files.downloads >= 4
    cluster_ip = service_ip(core, serving.ns)
    info = wait_for("the Service answering", lambda: get_json(cluster_ip, "/"), timeout=30)
    assert (info["source"], info["revision"]) == ("/models/model.json", "v1")
    assert info["model"]["classes"] == MODEL["classes"]
    wait_for(
        "Prometheus scraping the four v1 pods",
        lambda: len(prometheus.query(f'up{{job="pods",revision="{v1}"}} == 1')) == 4,
        timeout=60,
    )
    assert observer.latest() is not None


def bad_rolled_back(serving: Serving, core: client.CoreV1Api, observer: Observer) -> None:
    """A revision failing 20% of its requests is rolled back on its measured error ratio."""
    v1 = serving.status(NAME)["stableRevision"]
    load = Load(service_ip(core, serving.ns), observer, limit=180)
    patch_env(serving, "bad", "0.2")
    status, answers = run_until(
        load, serving, "the bad canary rolled back", lambda s: s.get("phase") == "Degraded", 180
    )
    bad = status["abortedRevision"]
    assert bad != v1
    assert status["stableRevision"] == v1
    healthy = {c["type"]: c for c in status["conditions"]}["Healthy"]
    assert healthy["reason"] == "RolledBack"
    found = re.search(
        r"rolled back: analysis failed: error-ratio = (\S+) \(must be <= 0\.05\)",
        healthy["message"],
    )
    assert found, healthy["message"]
    measured = float(found.group(1))
    assert measured > MAX_ERROR_RATIO
    (result,) = status["lastAnalysis"]["results"]
    assert (result["name"], result["verdict"]) == ("error-ratio", "Failed")
    assert result["value"] == pytest.approx(measured, rel=1e-4)
    from_bad = [a for a in answers if a.revision == "bad"]
    failed = sum(a.code == 500 for a in from_bad)
    print(
        f"\nbad canary: {len(from_bad)} of {len(answers)} requests answered by it, {failed} of "
        f"them 500; rolled back at error-ratio = {measured:g}: {healthy['message']}"
    )
    assert failed > 0, "the bad canary never failed a request of the load"
    wait_for(
        "the stable back at four ready replicas, the canary at none",
        lambda: (latest := observer.latest()) is not None and latest.ready == ((v1, 4),),
        timeout=120,
    )
    assert serving.replicas(NAME) == {v1: 4, bad: 0}
    # Gone, not only unready: nothing of it may answer the next rollout's load.
    wait_for(
        "the bad canary's pods gone",
        lambda: (
            not core.list_namespaced_pod(serving.ns, label_selector=f"{REVISION_LABEL}={bad}").items
        ),
        timeout=60,
    )


def good_promoted(serving: Serving, core: client.CoreV1Api, observer: Observer) -> None:
    """A good revision walks 25%, 50%, 100%: at each step the share of requests the canary
    answers is within TOLERANCE of its weight; then it is promoted."""
    v1 = serving.status(NAME)["stableRevision"]
    load = Load(service_ip(core, serving.ns), observer, limit=300)
    patch_env(serving, "v2", "0")
    status, answers = run_until(
        load,
        serving,
        "v2 promoted",
        lambda s: s.get("phase") == "Healthy" and s.get("stableRevision") not in (None, v1),
        300,
    )
    v2 = status["stableRevision"]
    shares = step_shares(answers, observer.snapshot(), v2, "v2")
    unanswered = [a for a in answers if a.revision is None]
    print(f"\ngood canary: {len(answers)} requests, {len(unanswered)} without an answer")
    for s in shares:
        print(
            f"  step {s.step + 1} (weight {s.weight}%): the canary answered {s.canary_answers} "
            f"of {s.requests} settled requests = {s.share:.1f}%"
        )
    where = f"\nsplits seen:\n{timeline(observer)}"
    (result,) = status["lastAnalysis"]["results"]
    assert (result["name"], result["verdict"], result.get("value")) == (
        "error-ratio",
        "Passed",
        0.0,
    ), where
    assert {a.revision for a in answers} <= {"v1", "v2", None}, where
    assert all(a.code == 200 and a.predictions_ok for a in answers if a.revision), where
    assert len(unanswered) <= 0.05 * len(answers), f"{unanswered[:5]}{where}"
    for s in shares:
        assert s.requests >= MIN_PER_STEP, f"step {s.step + 1}: {s.requests} requests{where}"
        assert abs(s.share - s.weight) <= TOLERANCE, f"step {s.step + 1}: {s.share:.1f}%{where}"
    wait_for(
        "v2 alone serving",
        lambda: (latest := observer.latest()) is not None and latest.ready == ((v2, 4),),
        timeout=120,
    )
