"""Pure pieces of pod specs shared by both controllers: the owner reference, GPU requests and
placement, the workload container's fields, and the escape-hatch merge."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from stratus.api.common import API_VERSION, GpuResources, Workload

Manifest = dict[str, Any]
# Written on every child, by both controllers.
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGER = "stratus"
GPU = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
GPU_TOLERATION = {"key": GPU, "operator": "Exists", "effect": "NoSchedule"}


@dataclass(frozen=True)
class Owner:
    """The custom resource every child points back to."""

    kind: str
    name: str
    namespace: str
    uid: str

    def reference(self) -> Manifest:
        return {
            "apiVersion": API_VERSION,
            "kind": self.kind,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


def resources(spec: GpuResources) -> Manifest:
    amounts: dict[str, str] = {}
    if spec.gpu:
        amounts[GPU] = str(spec.gpu)
    if spec.cpu is not None:
        amounts["cpu"] = str(spec.cpu)
    if spec.memory is not None:
        amounts["memory"] = str(spec.memory)
    return {"requests": dict(amounts), "limits": dict(amounts)}


def gpu_placement(spec: GpuResources) -> tuple[list[Manifest], list[Manifest]]:
    """Node-affinity terms and tolerations that GPUs of the requested product need."""
    terms: list[Manifest] = []
    tolerations: list[Manifest] = []
    if spec.gpu:
        tolerations.append(dict(GPU_TOLERATION))
    if spec.gpu_type:
        terms.append({"key": GPU_PRODUCT_LABEL, "operator": "In", "values": [spec.gpu_type]})
    return terms, tolerations


def affinity(terms: list[Manifest]) -> Manifest:
    if not terms:
        return {}
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": terms}]
            }
        }
    }


def container(
    name: str, workload: Workload, env: list[Manifest], mounts: list[Manifest], gpu: GpuResources
) -> Manifest:
    """The workload's container: image, command, args, env (the user's first), mounts."""
    built: Manifest = {
        "name": name,
        "image": workload.image,
        "env": [e.model_dump(by_alias=True, exclude_none=True) for e in workload.env] + env,
        "resources": resources(gpu),
        "volumeMounts": [
            m.model_dump(by_alias=True, exclude_none=True) for m in workload.volume_mounts
        ]
        + mounts,
    }
    if workload.command:
        built["command"] = list(workload.command)
    if workload.args:
        built["args"] = list(workload.args)
    if workload.env_from:
        built["envFrom"] = [e.model_dump(by_alias=True) for e in workload.env_from]
    if workload.working_dir:
        built["workingDir"] = workload.working_dir
    return built


def volumes(workload: Workload, extra: list[Manifest]) -> list[Manifest]:
    return [v.model_dump(by_alias=True, exclude_none=True) for v in workload.volumes] + extra


def merge_pod_spec(base: Manifest, override: Manifest) -> Manifest:
    """The escape hatch: mappings merge recursively, containers merge by name (others are added
    as sidecars), other lists are appended, scalars replace."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        current = merged.get(key)
        if key in ("containers", "initContainers") and isinstance(value, list):
            by_name = {c.get("name"): c for c in current or []}
            for item in value:
                name = item.get("name")
                if name in by_name:
                    by_name[name].update(merge_pod_spec(by_name[name], item))
                else:
                    merged.setdefault(key, []).append(copy.deepcopy(item))
        elif isinstance(current, dict) and isinstance(value, dict):
            merged[key] = merge_pod_spec(current, value)
        elif isinstance(current, list) and isinstance(value, list):
            merged[key] = current + copy.deepcopy(value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def template(workload: Workload, labels: dict[str, str], pod_spec: Manifest) -> Manifest:
    """The pod template: our labels win over the escape hatch's, its spec merges over ours."""
    meta: Manifest = {"labels": dict(labels), "annotations": {}}
    override = workload.pod_template
    if override and override.metadata:
        meta["labels"] = {**override.metadata.labels, **labels}
        meta["annotations"] = dict(override.metadata.annotations)
    if override and override.spec:
        pod_spec = merge_pod_spec(pod_spec, override.spec)
    return {"metadata": meta, "spec": pod_spec}
