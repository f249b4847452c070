"""The cluster as a fixture: a fresh local control plane per session by default, or the cluster
that STRATUS_E2E_KUBECONFIG names (kind, a cloud cluster), in which case nothing is started."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client

from tests.support import api_client, wait_for


@dataclass(frozen=True)
class Cluster:
    kubeconfig: Path
    api: client.ApiClient
    # The state directory of a local control plane this session started, else None.
    state_dir: Path | None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in str(item.path):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    external = os.environ.get("STRATUS_E2E_KUBECONFIG")
    if external:
        yield Cluster(Path(external), api_client(Path(external)), None)
        return
    from stratus.devcluster.cluster import LocalCluster  # noqa: PLC0415

    state_dir = tmp_path_factory.mktemp("cluster")
    local = LocalCluster(state_dir)
    local.up()
    try:
        yield Cluster(local.kubeconfig, api_client(local.kubeconfig), state_dir)
    finally:
        local.down()


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
