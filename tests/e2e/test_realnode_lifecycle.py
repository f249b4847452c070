"""The real node's own life: it joins, runs our image in a real container, and `down` leaves the
host as it found it, twice over. This runs before the session's cluster starts its real node:
kube-proxy's and the kubelet's iptables chains have fixed names, so one real node runs at a time
on a machine."""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes import client

from stratus.devcluster import realnode
from stratus.devcluster.cluster import LocalCluster
from stratus.devcluster.nodepools import NodePool
from tests.support import api_client, needs_real_node, wait_for

OPERATOR_IMAGE = "ghcr.io/stratus-dev/stratus-operator:0.1.0"


@pytest.mark.before_cluster
def test_real_node_runs_our_image_and_two_up_down_cycles_leave_nothing(tmp_path: Path) -> None:
    reason = realnode.unavailable()
    if reason:
        needs_real_node(reason)
    root = tmp_path / "real"
    before = realnode.host_traces(root)
    local = LocalCluster(root, (NodePool(name="cpu", count=1),), real_node=realnode.RealNode())
    for cycle in range(2):
        local.up()
        try:
            core = client.CoreV1Api(api_client(local.kubeconfig))
            node = core.read_node("real-0")
            assert node.status.allocatable["nvidia.com/gpu"] == "2"
            assert node.status.node_info.kubelet_version.startswith("v1.")
            name = f"hello-{cycle}"
            assert _run_to_completion(core, name) == "Succeeded"
            pod = core.read_namespaced_pod(name, "default")
            assert pod.spec.node_name == "real-0"  # the simulated node is tainted
            assert core.read_namespaced_pod_log(name, "default").strip() == "hello"
        finally:
            local.down()
        assert realnode.host_traces(root) == before, f"cycle {cycle} left traces"


def _run_to_completion(core: client.CoreV1Api, name: str) -> str:
    """Run our operator image's Python in a pod; its final phase."""
    core.create_namespaced_pod(
        "default",
        {
            "metadata": {"name": name},
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    {
                        "name": "c",
                        "image": OPERATOR_IMAGE,
                        "imagePullPolicy": "Never",
                        "command": ["python", "-c", "import stratus; print('hello')"],
                    }
                ],
            },
        },
    )

    def finished() -> str | None:
        phase = core.read_namespaced_pod(name, "default").status.phase
        return str(phase) if phase in ("Succeeded", "Failed") else None

    return wait_for(f"pod {name} to finish", finished, timeout=90)
