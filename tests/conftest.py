"""The cluster as a fixture: a fresh local control plane per session by default, or the cluster
that STRATUS_E2E_KUBECONFIG names (kind, a cloud cluster), in which case nothing is started."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from stratus.devcluster import realnode
from stratus.devcluster.realnode import RealNode
from tests.prometheus import Exporter, Prometheus
from tests.support import api_client, needs_real_node, wait_for

CRDS = Path(__file__).resolve().parents[1] / "crds"


@dataclass(frozen=True)
class Cluster:
    kubeconfig: Path
    api: client.ApiClient
    # The state directory of a local control plane this session started, else None.
    state_dir: Path | None
    # The node that runs real containers (the local real node, or any node of a real cluster).
    real_node: str | None = None


def _local_real_node() -> RealNode | None:
    """The real node to start beside the kwok pools; None (or, on CI, a failure) when this
    machine cannot run one."""
    reason = realnode.unavailable()
    if os.environ.get("STRATUS_E2E_REAL_NODE") == "0" and not os.environ.get("CI"):
        # A kwok-only cluster, for a second session beside one that holds the real node.
        return None
    if reason is None:
        return realnode.RealNode()
    if os.environ.get("CI"):
        raise RuntimeError(f"CI needs the real node: {reason}")
    return None


def _external_real_node(api: client.ApiClient) -> str | None:
    """In a real cluster (kind, a cloud), any Ready node that kwok does not play."""
    for node in client.CoreV1Api(api).list_node().items:
        if "kwok.x-k8s.io/node" not in (node.metadata.annotations or {}):
            return str(node.metadata.name)
    return None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in str(item.path):
            item.add_marker(pytest.mark.e2e)
    # Tests that need the machine to themselves run before the session's cluster starts; tests
    # of what the API server alone does with our objects, before the session's operator.
    items.sort(
        key=lambda item: (
            item.get_closest_marker("before_cluster") is None,
            item.get_closest_marker("before_operator") is None,
        )
    )


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    external = os.environ.get("STRATUS_E2E_KUBECONFIG")
    if external:
        api = api_client(Path(external))
        node = _external_real_node(api)
        yield Cluster(Path(external), api, None, node)
        return
    from stratus.devcluster.cluster import LocalCluster  # noqa: PLC0415

    state_dir = tmp_path_factory.mktemp("cluster")
    real = _local_real_node()
    local = LocalCluster(state_dir, real_node=real)
    local.up()
    try:
        yield Cluster(
            local.kubeconfig,
            api_client(local.kubeconfig),
            state_dir,
            real.name if real else None,
        )
    finally:
        local.down()


@pytest.fixture
def real_node(cluster: Cluster) -> str:
    """The name of the node that runs real containers; skips (fails on CI) when there is none."""
    if cluster.real_node is None:
        needs_real_node(realnode.unavailable() or "the cluster has no node that kwok does not play")
    return cluster.real_node


@pytest.fixture(scope="session")
def crds(cluster: Cluster) -> list[str]:
    """The checked-in CRDs, applied server-side and Established."""
    paths = sorted(CRDS.glob("*.yaml"))
    kubectl(cluster, "apply", "--server-side", "--force-conflicts", *[f"-f={p}" for p in paths])
    names = [doc["metadata"]["name"] for p in paths for doc in yaml.safe_load_all(p.read_text())]
    kubectl(
        cluster,
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        *[f"crd/{n}" for n in names],
    )
    return names


def kubectl(cluster: Cluster, *args: str) -> str:
    """Run the pinned kubectl against the test cluster; fail with its stderr."""
    from stratus.devcluster import binaries  # noqa: PLC0415

    cmd = [str(binaries.locate()["kubectl"]), f"--kubeconfig={cluster.kubeconfig}", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed: {done.stderr}")
    return done.stdout


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    """A namespace of the test's own, deleted afterwards."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(cluster.api)
    core.create_namespace({"metadata": {"name": name}})
    # Pods are refused until the controller manager has made the namespace's ServiceAccount.
    wait_for(
        f"ServiceAccount {name}/default", lambda: core.list_namespaced_service_account(name).items
    )
    try:
        yield name
    finally:
        core.delete_namespace(name)


class OperatorProcess:
    """`stratus operator` run out of cluster against the test cluster, as a real process."""

    def __init__(
        self,
        kubeconfig: Path,
        log_dir: Path,
        env: dict[str, str] | None = None,
        name: str = "operator",
    ) -> None:
        self.kubeconfig = kubeconfig
        self.log_dir = log_dir
        self.env = env or {}
        self.name = name
        self.metrics_port = free_port()
        # Its own free port: the metrics port + 1 may be any other process's.
        self.health_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def log(self) -> Path:
        return self.log_dir / f"{self.name}-{self.starts}.log"

    def start(self) -> None:
        self.starts += 1
        cmd = [
            sys.executable,
            "-m",
            "stratus.cli",
            "operator",
            f"--kubeconfig={self.kubeconfig}",
            f"--metrics-port={self.metrics_port}",
            f"--health-port={self.health_port}",
        ]
        # A replaced stable revision retires quickly, so rollout tests see it go.
        env = {**os.environ, "STRATUS_RETIRE_AFTER_SECONDS": "2", **self.env}
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        wait_for("the operator's metrics endpoint", self._serving, timeout=30)

    def _serving(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"the operator exited: {self.log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=1
            ) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            return str(resp.read().decode())

    def kill(self) -> None:
        """SIGKILL: no chance to clean up, as when a node dies under the operator."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def prometheus_ports() -> tuple[int, int]:
    """Ports for the tests' Prometheus servers (the exporter's, the real pods'), chosen before
    the operator starts: it queries only the addresses its admin allowed."""
    return free_port(), free_port()


def prometheus_address(port: int) -> str:
    return f"http://127.0.0.1:{port}"


class OperatorClock:
    """The session operator's clock (stratus.clock): moved forward by a test, put back after."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.set(0)

    def set(self, offset_seconds: float) -> None:
        self.path.write_text(str(offset_seconds))


@pytest.fixture(scope="session")
def clock_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("clock") / "offset"


@pytest.fixture
def operator_clock(clock_file: Path, operator: OperatorProcess) -> Iterator[OperatorClock]:
    clock = OperatorClock(clock_file)
    try:
        yield clock
    finally:
        clock.set(0)


# The session operator's price table (per GPU-hour): metering prices GPU time by it.
PRICES = {
    "default": {"spot": 1.0, "onDemand": 3.0},
    "NVIDIA-H100-80GB-HBM3": {"spot": 4.0, "onDemand": 10.0},
}


@pytest.fixture(scope="session")
def operator(
    cluster: Cluster,
    crds: list[str],
    tmp_path_factory: pytest.TempPathFactory,
    prometheus_ports: tuple[int, int],
    clock_file: Path,
) -> Iterator[OperatorProcess]:
    allowed = ",".join(prometheus_address(port) for port in prometheus_ports)
    OperatorClock(clock_file)
    proc = OperatorProcess(
        cluster.kubeconfig,
        tmp_path_factory.mktemp("operator"),
        {
            "STRATUS_PROMETHEUS_ADDRESSES": allowed,
            # nlp gets its own metric series; any other team shares `other`.
            "STRATUS_TEAMS": "nlp",
            "STRATUS_PRICES": json.dumps(PRICES),
            "STRATUS_CURRENCY": "USD",
            # Only the metering test's cost center gets its own series.
            "STRATUS_COST_CENTERS": "metering",
            "STRATUS_CLOCK_OFFSET_FILE": str(clock_file),
        },
    )
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def install_crds(cluster: Cluster, name: str) -> None:
    """Install a third party's CRDs (see stratus.devcluster.thirdparty) and wait for them."""
    from stratus.devcluster import thirdparty  # noqa: PLC0415

    files = thirdparty.crd_files(name)
    kubectl(cluster, "apply", "--server-side", "--force-conflicts", *[f"-f={f}" for f in files])
    kubectl(
        cluster, "wait", "--for=condition=Established", "--timeout=60s", *[f"-f={f}" for f in files]
    )


@pytest.fixture(scope="session")
def exporter() -> Iterator[Exporter]:
    """Per-revision request counters and latency histograms, as model servers export them."""
    served = Exporter()
    yield served
    served.stop()


@pytest.fixture(scope="session")
def prometheus(
    exporter: Exporter,
    tmp_path_factory: pytest.TempPathFactory,
    prometheus_ports: tuple[int, int],
) -> Iterator[Prometheus]:
    """A real Prometheus scraping the exporter every second."""
    server = Prometheus(
        tmp_path_factory.mktemp("prometheus"), exporter.address, prometheus_ports[0]
    )
    yield server
    server.stop()
