"""Pure builders: a TrainingJob's spec and an attempt number in, the Job (and, for distributed
runs, the headless Service) that runs the attempt out."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from stratus.api.common import API_VERSION
from stratus.api.trainingjob import KIND, TrainingJobSpec
from stratus.config import CapacityConvention
from stratus.training.labels import (
    ATTEMPT_LABEL,
    COST_CENTER_LABEL,
    KUEUE_QUEUE_LABEL,
    MANAGED_BY_LABEL,
    MANAGER,
    TEAM_LABEL,
    TRAININGJOB_LABEL,
)

Manifest = dict[str, Any]
GPU = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
CONTAINER = "train"
CHECKPOINT_VOLUME = "stratus-checkpoints"


@dataclass(frozen=True)
class Owner:
    """The TrainingJob every child points back to."""

    name: str
    namespace: str
    uid: str

    def reference(self) -> Manifest:
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


@dataclass(frozen=True)
class AttemptPlan:
    """What differs between attempts."""

    number: int
    resume_from: str | None
    on_spot: bool
    # Seconds left of the TrainingJob's activeDeadlineSeconds, if it has one.
    deadline_seconds: int | None = None


def job_name(owner_name: str, attempt: int) -> str:
    return f"{owner_name}-{attempt}"


def service_name(owner_name: str) -> str:
    return owner_name


def common_labels(owner: Owner, spec: TrainingJobSpec) -> dict[str, str]:
    labels = {TRAININGJOB_LABEL: owner.name, MANAGED_BY_LABEL: MANAGER}
    if spec.team:
        labels[TEAM_LABEL] = spec.team
    if spec.cost_center:
        labels[COST_CENTER_LABEL] = spec.cost_center
    return labels


def _env(
    owner: Owner, spec: TrainingJobSpec, attempt: AttemptPlan, master_port: int
) -> list[Manifest]:
    env: list[Manifest] = [e.model_dump(by_alias=True, exclude_none=True) for e in spec.env]
    mount = spec.checkpoint.mount_path if spec.checkpoint else "/checkpoints"
    env += [
        {"name": "STRATUS_CHECKPOINT_DIR", "value": mount},
        {"name": "STRATUS_ATTEMPT", "value": str(attempt.number)},
    ]
    if spec.checkpoint and spec.checkpoint.uri:
        env.append({"name": "STRATUS_CHECKPOINT_URI", "value": spec.checkpoint.uri})
    if attempt.resume_from:
        env.append({"name": "STRATUS_RESUME_FROM", "value": attempt.resume_from})
    if spec.workers > 1:
        index = {
            "fieldRef": {
                "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"
            }
        }
        master = f"{job_name(owner.name, attempt.number)}-0.{service_name(owner.name)}"
        # torchrun reads PET_*; plain PyTorch and most launchers read the rest.
        for prefix in ("", "PET_"):
            env += [
                {"name": f"{prefix}MASTER_ADDR", "value": master},
                {"name": f"{prefix}MASTER_PORT", "value": str(master_port)},
                {"name": f"{prefix}NNODES", "value": str(spec.workers)},
                {"name": f"{prefix}NODE_RANK", "valueFrom": index},
            ]
        env += [
            {"name": "WORLD_SIZE", "value": str(spec.workers)},
            {"name": "RANK", "valueFrom": index},
        ]
    return env


def _resources(spec: TrainingJobSpec) -> Manifest:
    amounts: dict[str, str] = {}
    if spec.resources.gpu:
        amounts[GPU] = str(spec.resources.gpu)
    if spec.resources.cpu is not None:
        amounts["cpu"] = str(spec.resources.cpu)
    if spec.resources.memory is not None:
        amounts["memory"] = str(spec.resources.memory)
    return {"requests": dict(amounts), "limits": dict(amounts)}


def _placement(
    spec: TrainingJobSpec, attempt: AttemptPlan, capacity: CapacityConvention
) -> tuple[Manifest, list[Manifest]]:
    """Node affinity and tolerations: GPU product, spot or on-demand capacity."""
    terms: list[Manifest] = []
    tolerations: list[Manifest] = []
    if spec.resources.gpu:
        tolerations.append({"key": GPU, "operator": "Exists", "effect": "NoSchedule"})
    if spec.resources.gpu_type:
        terms.append(
            {"key": GPU_PRODUCT_LABEL, "operator": "In", "values": [spec.resources.gpu_type]}
        )
    if attempt.on_spot:
        terms.append({"key": capacity.label, "operator": "In", "values": [capacity.spot_value]})
        if capacity.taint_key:
            toleration = {
                "key": capacity.taint_key,
                "operator": "Equal",
                "value": capacity.taint_value or "",
                "effect": "NoSchedule",
            }
            tolerations.append(toleration)
    elif spec.spot.enabled:
        # Fallen back to on-demand: keep off spot nodes explicitly.
        terms.append({"key": capacity.label, "operator": "NotIn", "values": [capacity.spot_value]})
    affinity: Manifest = {}
    if terms:
        affinity = {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": terms}]
                }
            }
        }
    return affinity, tolerations


def _volumes(spec: TrainingJobSpec) -> tuple[list[Manifest], list[Manifest]]:
    volumes = [v.model_dump(by_alias=True, exclude_none=True) for v in spec.volumes]
    mounts = [m.model_dump(by_alias=True, exclude_none=True) for m in spec.volume_mounts]
    checkpoint = spec.checkpoint
    if checkpoint and checkpoint.persistent_volume_claim:
        source: Manifest = {
            "persistentVolumeClaim": {"claimName": checkpoint.persistent_volume_claim}
        }
    else:
        # Object storage (the program syncs it) or nothing: a scratch directory per pod.
        source = {"emptyDir": {}}
    volumes.append({"name": CHECKPOINT_VOLUME, **source})
    mounts.append(
        {
            "name": CHECKPOINT_VOLUME,
            "mountPath": checkpoint.mount_path if checkpoint else "/checkpoints",
        }
    )
    return volumes, mounts


def merge_pod_spec(base: Manifest, override: Manifest) -> Manifest:
    """The escape hatch: mappings merge recursively, containers merge by name (others are added
    as sidecars), other lists are appended, scalars replace."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        current = merged.get(key)
        if key in ("containers", "initContainers") and isinstance(value, list):
            by_name = {c.get("name"): c for c in current or []}
            for container in value:
                name = container.get("name")
                if name in by_name:
                    by_name[name].update(merge_pod_spec(by_name[name], container))
                else:
                    merged.setdefault(key, []).append(copy.deepcopy(container))
        elif isinstance(current, dict) and isinstance(value, dict):
            merged[key] = merge_pod_spec(current, value)
        elif isinstance(current, list) and isinstance(value, list):
            merged[key] = current + copy.deepcopy(value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def build_job(
    owner: Owner,
    spec: TrainingJobSpec,
    attempt: AttemptPlan,
    capacity: CapacityConvention,
    master_port: int = 29500,
) -> Manifest:
    labels = {**common_labels(owner, spec), ATTEMPT_LABEL: str(attempt.number)}
    job_labels = dict(labels)
    if spec.queue_name:
        job_labels[KUEUE_QUEUE_LABEL] = spec.queue_name
    affinity, tolerations = _placement(spec, attempt, capacity)
    volumes, mounts = _volumes(spec)
    container: Manifest = {
        "name": CONTAINER,
        "image": spec.image,
        "env": _env(owner, spec, attempt, master_port),
        "resources": _resources(spec),
        "volumeMounts": mounts,
        "terminationMessagePolicy": "File",
    }
    if spec.command:
        container["command"] = list(spec.command)
    if spec.args:
        container["args"] = list(spec.args)
    if spec.env_from:
        container["envFrom"] = [e.model_dump(by_alias=True) for e in spec.env_from]
    if spec.working_dir:
        container["workingDir"] = spec.working_dir
    pod_spec: Manifest = {
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": spec.termination_grace_period_seconds,
        "containers": [container],
        "volumes": volumes,
    }
    if affinity:
        pod_spec["affinity"] = affinity
    if tolerations:
        pod_spec["tolerations"] = tolerations
    if spec.priority_class_name:
        pod_spec["priorityClassName"] = spec.priority_class_name
    if spec.workers > 1:
        pod_spec["subdomain"] = service_name(owner.name)
    pod_meta: Manifest = {"labels": dict(labels), "annotations": {}}
    override = spec.pod_template
    if override and override.metadata:
        pod_meta["labels"] = {**override.metadata.labels, **labels}
        pod_meta["annotations"].update(override.metadata.annotations)
    if override and override.spec:
        pod_spec = merge_pod_spec(pod_spec, override.spec)

    job_spec: Manifest = {
        "parallelism": spec.workers,
        "completions": spec.workers,
        "completionMode": "Indexed",
        # Stratus retries at the level of attempts; the Job itself never retries a pod.
        "backoffLimit": 0,
        "podFailurePolicy": {
            "rules": [
                # A disrupted pod (spot reclaim, node loss, eviction) ends the attempt as preempted.
                {"action": "FailJob", "onPodConditions": [{"type": "DisruptionTarget"}]},
                # Any other failure ends it with the exit code named in the Job's condition.
                {
                    "action": "FailJob",
                    "onExitCodes": {"containerName": CONTAINER, "operator": "NotIn", "values": [0]},
                },
            ]
        },
        "template": {"metadata": pod_meta, "spec": pod_spec},
    }
    if attempt.deadline_seconds is not None:
        job_spec["activeDeadlineSeconds"] = max(1, attempt.deadline_seconds)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(owner.name, attempt.number),
            "namespace": owner.namespace,
            "labels": job_labels,
            "ownerReferences": [owner.reference()],
        },
        "spec": job_spec,
    }


def build_service(owner: Owner, spec: TrainingJobSpec, master_port: int = 29500) -> Manifest:
    """The headless Service that gives distributed workers stable DNS names across attempts."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": service_name(owner.name),
            "namespace": owner.namespace,
            "labels": common_labels(owner, spec),
            "ownerReferences": [owner.reference()],
        },
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": {TRAININGJOB_LABEL: owner.name},
            "ports": [{"name": "rendezvous", "port": master_port}],
        },
    }
