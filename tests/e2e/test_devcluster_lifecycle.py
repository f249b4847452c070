"""`stratus dev up`/`down` beside the session's cluster: repeated, idempotent, nothing left."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from kubernetes import client

from stratus.cli import main as stratus_main
from stratus.devcluster.cluster import LocalCluster, _owned
from stratus.devcluster.nodepools import NodePool
from tests.support import api_client, wait_for


def port_is_free(port: int) -> bool:
    """No process listens on `port` (connections lingering in TIME_WAIT do not count)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.mark.usefixtures("cluster")
def test_up_down_twice_beside_another_cluster_leaves_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    local = LocalCluster(tmp_path / "second", (NodePool(name="gpu", count=1, gpus=2),))
    for _ in range(2):
        first = local.up()
        assert local.up().started_at == first.started_at  # a second `up` reuses it
        assert stratus_main(["dev", "status", "--state-dir", str(tmp_path / "second")]) == 0
        assert "kube-apiserver" in capsys.readouterr().out
        local.down()
        for proc in first.processes:
            assert not _owned(proc.pid, local.layout.root), f"{proc.name} still runs"
            assert port_is_free(proc.port), f"{proc.name}'s port {proc.port} still bound"
    assert stratus_main(["dev", "status", "--state-dir", str(tmp_path / "second")]) == 1


def test_attach_adds_kwok_and_gpu_nodes_to_an_existing_cluster(tmp_path: Path) -> None:
    """The kind path: an existing control plane (here a bare local one) gets simulated GPU
    nodes from `stratus dev up --attach`, and pods run on them."""
    bare = LocalCluster(tmp_path / "bare", pools=())
    bare.up()
    try:
        attached = LocalCluster(
            tmp_path / "kwok", (NodePool(name="gpu", count=2, gpus=4),), attach_to=bare.kubeconfig
        )
        state = attached.up()
        assert [p.name for p in state.processes] == ["kwok"]
        core = client.CoreV1Api(api_client(bare.kubeconfig))
        nodes = {n.metadata.name: n for n in core.list_node().items}
        assert set(nodes) == {"gpu-0", "gpu-1"}
        assert nodes["gpu-0"].status.allocatable["nvidia.com/gpu"] == "4"
        core.create_namespaced_pod(
            "default",
            {
                "metadata": {"name": "p"},
                "spec": {
                    "tolerations": [{"operator": "Exists"}],
                    "containers": [
                        {
                            "name": "c",
                            "image": "x",
                            "resources": {"limits": {"nvidia.com/gpu": "1"}},
                        }
                    ],
                },
            },
        )
        wait_for(
            "the pod Running on a simulated node",
            lambda: core.read_namespaced_pod("p", "default").status.phase == "Running",
        )
        attached.down()
        assert not core.list_node().items
        assert not any(_owned(p.pid, attached.layout.root) for p in state.processes)
    finally:
        bare.down()
