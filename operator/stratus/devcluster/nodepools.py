"""Simulated node pools: pure builders of the Node objects kwok plays the kubelet for."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
# The one spot convention the local cluster follows (Karpenter's label, tainted NoSchedule so only
# workloads that opt in land there). The operator's own spot selector is configurable separately.
CAPACITY_TYPE_LABEL = "karpenter.sh/capacity-type"
POOL_LABEL = "stratus.dev/pool"
# kwok manages exactly the nodes carrying this annotation.
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
KWOK_NODE_VALUE = "fake"
# When a real node is in the cluster, simulated nodes carry kwok's own taint, so that a workload
# lands on a simulated node only when it says so (SIMULATED_TOLERATION) and never by accident.
SIMULATED_TAINT = {"key": KWOK_NODE_ANNOTATION, "value": KWOK_NODE_VALUE, "effect": "NoSchedule"}
SIMULATED_TOLERATION = {"key": KWOK_NODE_ANNOTATION, "operator": "Exists", "effect": "NoSchedule"}
# Every simulated node carries this label (kwok's convention).
SIMULATED_LABEL = {"type": "kwok"}
# What a pod spec (or a TrainingJob's or InferenceService's podTemplate.spec, which merges it in)
# says to run simulated: on kwok's nodes only, never on the real node, whose kubelet would try
# to run its image for real.
SIMULATED_POD_SPEC = {"tolerations": [SIMULATED_TOLERATION], "nodeSelector": SIMULATED_LABEL}

Manifest = dict[str, Any]


class Taint(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str
    value: str = ""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] = "NoSchedule"


class NodePool(BaseModel):
    """A group of identical simulated nodes."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=40)
    count: int = Field(ge=0, le=1000)
    gpus: int = Field(default=0, ge=0, le=64)
    gpu_product: str = Field(default="NVIDIA-H100-80GB-HBM3", alias="gpuProduct")
    capacity_type: Literal["on-demand", "spot"] = Field(default="on-demand", alias="capacityType")
    cpu: str = "192"
    memory: str = "2048Gi"
    labels: dict[str, str] = Field(default_factory=dict)
    taints: list[Taint] = Field(default_factory=list)


class NodePoolConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pools: list[NodePool]


DEFAULT_POOLS = (
    NodePool(name="gpu-ondemand", count=2, gpus=8, capacity_type="on-demand"),
    NodePool(name="gpu-spot", count=4, gpus=8, capacity_type="spot"),
    NodePool(name="cpu", count=2, gpus=0, cpu="32", memory="128Gi"),
)


def load_pools(path: Path | None) -> tuple[NodePool, ...]:
    """The pools in a YAML file (`pools: [...]`), or the defaults when no file is given."""
    if path is None:
        return DEFAULT_POOLS
    return tuple(NodePoolConfig.model_validate(yaml.safe_load(path.read_text())).pools)


def node_name(pool: NodePool, index: int) -> str:
    return f"{pool.name}-{index}"


def _taints(pool: NodePool, beside_real: bool) -> list[Manifest]:
    taints = [t.model_dump() for t in pool.taints]
    if beside_real:
        taints.append(dict(SIMULATED_TAINT))
    if pool.gpus:
        # As GKE and AKS do: GPU nodes repel pods that do not ask for a GPU.
        taints.append({"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"})
    if pool.capacity_type == "spot":
        taints.append({"key": CAPACITY_TYPE_LABEL, "value": "spot", "effect": "NoSchedule"})
    return taints


def node_manifest(pool: NodePool, index: int, beside_real: bool = False) -> Manifest:
    name = node_name(pool, index)
    labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        **SIMULATED_LABEL,
        POOL_LABEL: pool.name,
        CAPACITY_TYPE_LABEL: pool.capacity_type,
        **pool.labels,
    }
    capacity = {"cpu": pool.cpu, "memory": pool.memory, "pods": "110", "ephemeral-storage": "1Ti"}
    if pool.gpus:
        labels[GPU_PRODUCT_LABEL] = pool.gpu_product
        labels["nvidia.com/gpu.count"] = str(pool.gpus)
        labels["nvidia.com/gpu.present"] = "true"
        capacity[GPU_RESOURCE] = str(pool.gpus)
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": {KWOK_NODE_ANNOTATION: KWOK_NODE_VALUE},
        },
        "spec": {"taints": _taints(pool, beside_real)},
        "status": {"capacity": capacity, "allocatable": dict(capacity)},
    }


def node_manifests(pools: tuple[NodePool, ...], beside_real: bool = False) -> list[Manifest]:
    return [node_manifest(pool, i, beside_real) for pool in pools for i in range(pool.count)]


# Claims of the simulated pools' pods: no provisioner runs here, so `up` creates volumes in
# advance, as an admin does where none runs. A claim without a storage class (examples/ ask for
# the default class, and this cluster has none) binds to the smallest that fits.
SIMULATED_VOLUMES = 4
SIMULATED_VOLUME_SIZE = "10Ti"


def simulated_volume(index: int) -> Manifest:
    """A PersistentVolume usable on simulated nodes only: kwok mounts nothing, and the node
    affinity keeps it from the real node, whose kubelet would mount its path for real."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": f"simulated-volume-{index}", "labels": {POOL_LABEL: "simulated"}},
        "spec": {
            "capacity": {"storage": SIMULATED_VOLUME_SIZE},
            "accessModes": ["ReadWriteOnce", "ReadWriteMany"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "",
            "local": {"path": f"/simulated/volume-{index}"},
            "nodeAffinity": {
                "required": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {"key": key, "operator": "In", "values": [value]}
                                for key, value in SIMULATED_LABEL.items()
                            ]
                        }
                    ]
                }
            },
        },
    }


def simulated_volumes(pools: tuple[NodePool, ...]) -> list[Manifest]:
    """Volumes for the simulated pools; none without pools."""
    return [simulated_volume(i) for i in range(SIMULATED_VOLUMES)] if pools else []


def simulated(doc: Manifest) -> Manifest:
    """A TrainingJob or InferenceService made to run on the simulated pools: the kwok toleration
    and selector merged into its podTemplate (the operator appends tolerations and merges
    selectors). Other kinds pass unchanged."""
    if doc.get("kind") not in ("TrainingJob", "InferenceService"):
        return doc
    out = {**doc, "spec": {**doc.get("spec", {})}}
    template = {**out["spec"].get("podTemplate", {})}
    spec = {**template.get("spec", {})}
    spec["tolerations"] = [*spec.get("tolerations", []), SIMULATED_TOLERATION]
    spec["nodeSelector"] = {**spec.get("nodeSelector", {}), **SIMULATED_LABEL}
    template["spec"] = spec
    out["spec"]["podTemplate"] = template
    return out
