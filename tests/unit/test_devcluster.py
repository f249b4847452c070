"""The local cluster's pure parts: pools, versions, stages, command lines."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from stratus.devcluster import binaries, cluster, nodepools, pki

REPO = Path(__file__).resolve().parents[2]


def test_default_pools_match_the_documented_layout() -> None:
    nodes = nodepools.node_manifests(nodepools.DEFAULT_POOLS)
    by_pool: dict[str, list[dict[str, Any]]] = {}
    for node in nodes:
        by_pool.setdefault(node["metadata"]["labels"][nodepools.POOL_LABEL], []).append(node)
    assert {k: len(v) for k, v in by_pool.items()} == {"gpu-ondemand": 2, "gpu-spot": 4, "cpu": 2}
    for node in by_pool["gpu-spot"]:
        assert node["status"]["allocatable"]["nvidia.com/gpu"] == "8"
        assert node["metadata"]["labels"]["karpenter.sh/capacity-type"] == "spot"
        assert {
            "key": "karpenter.sh/capacity-type",
            "value": "spot",
            "effect": "NoSchedule",
        } in node["spec"]["taints"]
        assert node["metadata"]["labels"]["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
    for node in by_pool["cpu"]:
        assert "nvidia.com/gpu" not in node["status"]["capacity"]
        assert node["spec"]["taints"] == []
    assert all(n["metadata"]["annotations"] == {"kwok.x-k8s.io/node": "fake"} for n in nodes)
    assert len({n["metadata"]["name"] for n in nodes}) == len(nodes)


def test_pools_load_from_yaml_and_reject_unknown_fields(tmp_path: Path) -> None:
    good = tmp_path / "pools.yaml"
    good.write_text(
        yaml.safe_dump(
            {
                "pools": [
                    {
                        "name": "a100-spot",
                        "count": 3,
                        "gpus": 4,
                        "gpuProduct": "NVIDIA-A100-SXM4-80GB",
                        "capacityType": "spot",
                    }
                ]
            }
        )
    )
    (pool,) = nodepools.load_pools(good)
    assert (pool.count, pool.gpus, pool.gpu_product) == (3, 4, "NVIDIA-A100-SXM4-80GB")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"pools": [{"name": "x", "count": 1, "gpu": 4}]}))
    with pytest.raises(ValidationError, match="gpu"):
        nodepools.load_pools(bad)


def test_pinned_versions_agree_with_the_go_wrapper_modules() -> None:
    pinned = binaries.versions()
    requires = {
        "KUBERNETES_VERSION": ("kubernetes", "k8s.io/kubernetes"),
        "ETCD_VERSION": ("etcd", "go.etcd.io/etcd/server/v3"),
        "KWOK_VERSION": ("kwok", "sigs.k8s.io/kwok"),
        "HELM_VERSION": ("helm", "helm.sh/helm/v3"),
        "TRAINING_OPERATOR_VERSION": ("training-operator", "github.com/kubeflow/training-operator"),
        "SEAWEEDFS_VERSION": ("seaweedfs", "github.com/seaweedfs/seaweedfs"),
    }
    for key, (folder, module) in requires.items():
        go_mod = (REPO / "hack" / "tools" / folder / "go.mod").read_text()
        assert re.search(
            rf"^\s*(require\s+)?{re.escape(module)} {re.escape(pinned[key])}$", go_mod, re.MULTILINE
        ), f"{folder}/go.mod does not pin {pinned[key]}"
    # Every staging module is replaced with the release matching the pinned Kubernetes.
    staging = "v0." + pinned["KUBERNETES_VERSION"].removeprefix("v1.")
    go_mod = (REPO / "hack" / "tools" / "kubernetes" / "go.mod").read_text()
    replaced = re.findall(r"^\s*(k8s\.io/\S+) => \S+ (\S+)$", go_mod, re.MULTILINE)
    assert len(replaced) > 20
    assert {version for _, version in replaced} == {staging}


def test_versions_file_parses_comments_and_blank_lines() -> None:
    assert binaries.parse_versions("# c\n\nA=1\n B = v2 \n") == {"A": "1", "B": "v2"}


def test_missing_binaries_name_the_build_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRATUS_CACHE", str(tmp_path))
    with pytest.raises(binaries.MissingBinariesError, match="make binaries"):
        binaries.locate()


def test_stages_are_well_formed_and_named_uniquely() -> None:
    stages = list(yaml.safe_load_all(cluster.STAGES_FILE.read_text()))
    names = [s["metadata"]["name"] for s in stages]
    assert len(names) == len(set(names))
    assert {s["spec"]["resourceRef"]["kind"] for s in stages} == {"Node", "Pod"}
    for stage in stages:
        assert stage["kind"] == "Stage"
        assert stage["spec"]["selector"]["matchExpressions"]


def test_every_component_command_names_the_state_dir(tmp_path: Path) -> None:
    layout = cluster.Layout(tmp_path)
    names = (*cluster.COMPONENTS, *cluster.EXTRA_PORTS)
    ports = {name: 10000 + i for i, name in enumerate(names)}
    bins = binaries.Binaries(
        {
            name: Path(f"/bin/{name}")
            for _, (_, names) in binaries.COMPONENTS.items()
            for name in names
        }
    )
    for name in cluster.COMPONENTS:
        args = cluster.component_args(layout, name, ports, bins, tmp_path / "kwok.kubeconfig")
        assert any(str(tmp_path) in a for a in args), name
        assert all("0.0.0.0" not in a for a in args), name  # noqa: S104
    apiserver = cluster.component_args(layout, "kube-apiserver", ports, bins, tmp_path / "k")
    assert "--authorization-mode=Node,RBAC" in apiserver


def test_kubeconfig_uses_the_identity_certificate(tmp_path: Path) -> None:
    layout = cluster.Layout(tmp_path)
    cfg = cluster.kubeconfig_for(layout, "https://127.0.0.1:1", pki.SCHEDULER)
    user = cfg["users"][0]["user"]
    assert user["client-certificate"].endswith("kube-scheduler.crt")
    assert cfg["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:1"


def test_pki_issues_a_ca_signed_client_cert_with_groups(tmp_path: Path) -> None:
    from cryptography import x509  # noqa: PLC0415
    from cryptography.x509.oid import NameOID  # noqa: PLC0415

    pki.write_pki(tmp_path, "10.96.0.1")
    ca = x509.load_pem_x509_certificate((tmp_path / "ca.crt").read_bytes())
    admin = x509.load_pem_x509_certificate((tmp_path / "admin.crt").read_bytes())
    admin.verify_directly_issued_by(ca)
    orgs = [a.value for a in admin.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    assert orgs == ["system:masters"]
    assert (tmp_path / "sa.key").stat().st_mode & 0o777 == 0o600


def test_ports_chosen_together_are_distinct() -> None:
    names = tuple(f"c{i}" for i in range(200))
    ports = cluster.free_ports(names)
    assert set(ports) == set(names)
    assert len(set(ports.values())) == len(names)
