"""A benchmark's world: its own local control plane with an audit log, the CRDs, the chart's
RBAC, and the operator running under the chart's ServiceAccount, so its requests can be counted
apart from everyone else's; with a real node (a kubelet on this machine) when one can run."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from kubernetes import client, config

from stratus.devcluster import binaries, kubeapi, packaging, realnode
from stratus.devcluster.cluster import LocalCluster
from stratus.devcluster.nodepools import NodePool

REPO = Path(__file__).resolve().parents[1]
OPERATOR_USER = "system:serviceaccount:stratus-system:stratus-operator"
# The namespaces where api_economy counts requests. Only these are audited: a blocking audit
# log would otherwise slow the operator's every request in the other benchmarks.
AUDITED_TRAINING = "bench-economy-tj"
AUDITED_SERVING = "bench-economy-infs"
# footprint counts what the operator asks of the API server while idle.
AUDITED_SCALE = "bench-scale"
AUDIT_POLICY = f"""apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    users: ["{OPERATOR_USER}"]
    namespaces: ["{AUDITED_TRAINING}", "{AUDITED_SERVING}", "{AUDITED_SCALE}"]
  - level: None
"""


@dataclass
class World:
    cluster: LocalCluster
    api: client.ApiClient
    audit_log: Path
    operator: subprocess.Popen[bytes]
    operator_log: Path
    metrics_port: int
    # The node that runs real containers, or None with the reason in `no_real_node`.
    real_node: str | None = None
    no_real_node: str = ""

    def kubectl(self, *args: str) -> str:
        return subprocess.run(
            [str(binaries.locate()["kubectl"]), f"--kubeconfig={self.cluster.kubeconfig}", *args],
            check=True,
            capture_output=True,
            text=True,
        ).stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait(what: str, probe: object, timeout: float = 300.0, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():  # type: ignore[operator]
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out waiting for {what}")


def choose_real_node() -> tuple[realnode.RealNode | None, str]:
    """The real node to start, or why there is none. Only one runs on a machine at a time, and
    it needs the project's images. CI always has one: there, a missing one fails the run."""
    reason = realnode.unavailable()
    if reason is None:
        other = realnode.running_elsewhere()
        if other is not None:
            reason = f"a real node already runs on this machine (bridge {other})"
    if reason is None:
        try:
            realnode.images_index()
        except realnode.RealNodeError as exc:
            reason = str(exc)
    if reason is None:
        return realnode.RealNode(), ""
    if os.environ.get("CI"):
        raise RuntimeError(f"CI needs the real node: {reason}")
    return None, reason


@contextlib.contextmanager
def world(
    workdir: Path,
    pools: tuple[NodePool, ...],
    real_node: realnode.RealNode | None = None,
    no_real_node: str = "",
) -> Iterator[World]:
    workdir.mkdir(parents=True, exist_ok=True)
    policy = workdir / "audit-policy.yaml"
    policy.write_text(AUDIT_POLICY)
    audit_log = workdir / "audit.log"
    audit_log.unlink(missing_ok=True)
    cluster = LocalCluster(
        workdir / "cluster",
        pools,
        extra_apiserver_args=(
            f"--audit-policy-file={policy}",
            f"--audit-log-path={audit_log}",
            "--audit-log-format=json",
            "--audit-log-mode=blocking",
        ),
        real_node=real_node,
    )
    cluster.up(log=lambda _msg: None)
    operator: subprocess.Popen[bytes] | None = None
    try:
        api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
        base = ["--kubeconfig", str(cluster.kubeconfig)]
        # The chart's ServiceAccount and RBAC, without its in-cluster Deployment.
        packaging.helm(
            "install",
            "stratus",
            str(packaging.CHART),
            "--namespace",
            "stratus-system",
            "--create-namespace",
            "--set",
            "replicas=0",
            *base,
        )
        kubeconfig = kubeapi.service_account_kubeconfig(
            cluster.kubeconfig,
            "stratus-system",
            "stratus-operator",
            workdir / "operator.kubeconfig",
            seconds=86400,
        )
        port = free_port()
        log = workdir / "operator.log"
        with log.open("wb") as out:
            operator = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "stratus.cli",
                    "operator",
                    f"--kubeconfig={kubeconfig}",
                    f"--metrics-port={port}",
                    f"--health-port={free_port()}",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "STRATUS_RETIRE_AFTER_SECONDS": "1"},
            )
        wait("the operator", lambda: answers(port, "/metrics"), timeout=60)
        yield World(
            cluster,
            api,
            audit_log,
            operator,
            log,
            port,
            real_node.name if real_node else None,
            "" if real_node else no_real_node or "not asked for",
        )
    finally:
        if operator is not None:
            operator.terminate()
            operator.wait(timeout=30)
        cluster.down(log=lambda _msg: None)


def answers(port: int, path: str) -> bool:
    """Whether a local endpoint answers with a success (urllib raises on errors and refusals)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1):
            return True
    except OSError:
        return False


def namespace(world: World, name: str) -> str:
    core = client.CoreV1Api(world.api)
    core.create_namespace({"metadata": {"name": name}})
    wait(f"namespace {name}", lambda: core.list_namespaced_service_account(name).items)
    return name
