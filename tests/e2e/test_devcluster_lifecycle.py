"""`stratus dev up`/`down` beside the session's cluster: repeated, idempotent, nothing left."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from stratus.cli import main as stratus_main
from stratus.devcluster.cluster import LocalCluster, _owned
from stratus.devcluster.nodepools import NodePool


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
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
