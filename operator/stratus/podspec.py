"""Pure pieces of pod specs shared by both controllers: the owner reference, GPU requests and
placement, the workload container's fields, the escape-hatch merge (placement only narrows) and
the restricted Pod Security defaults."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from stratus.api.common import (
    API_VERSION,
    CREDENTIAL_KEYS,
    ENDPOINT_KEY,
    REGION_KEY,
    GpuResources,
    Workload,
)

Manifest = dict[str, Any]
# Written on every child, by both controllers.
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGER = "stratus"
# Who pays: copied from the spec onto every child and pod, so any cost tool can allocate by them.
TEAM_LABEL = "stratus.dev/team"
COST_CENTER_LABEL = "stratus.dev/cost-center"
GPU = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
GPU_TOLERATION = {"key": GPU, "operator": "Exists", "effect": "NoSchedule"}
# What a container asks for when the spec names no cpu or memory: a pod without requests is
# BestEffort (evicted first) and refused where a ResourceQuota counts requests.
DEFAULT_REQUESTS = {"cpu": "100m", "memory": "128Mi"}
REQUIRED_NODE_AFFINITY = (
    "affinity",
    "nodeAffinity",
    "requiredDuringSchedulingIgnoredDuringExecution",
)
# Capabilities the API server will not combine with allowPrivilegeEscalation: false.
_ESCALATING = frozenset({"SYS_ADMIN", "CAP_SYS_ADMIN"})


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


def cost_labels(workload: Workload) -> dict[str, str]:
    """The team and cost-center labels of a resource's children, for those its spec names."""
    labels = {}
    if workload.team:
        labels[TEAM_LABEL] = workload.team
    if workload.cost_center:
        labels[COST_CENTER_LABEL] = workload.cost_center
    return labels


def resources(spec: GpuResources) -> Manifest:
    """Requests and limits: what the spec names is both; cpu and memory it leaves out are
    requested at DEFAULT_REQUESTS and not limited."""
    amounts: dict[str, str] = {}
    if spec.gpu:
        amounts[GPU] = str(spec.gpu)
    if spec.cpu is not None:
        amounts["cpu"] = str(spec.cpu)
    if spec.memory is not None:
        amounts["memory"] = str(spec.memory)
    return {"requests": {**DEFAULT_REQUESTS, **amounts}, "limits": dict(amounts)}


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


def object_store_env(endpoint: str | None, credentials_secret: str | None) -> list[Manifest]:
    """What an S3 client (the SDK's, the staging container's) reads: the store's endpoint, and
    the credentials as references to the tenant's Secret, resolved by the kubelet, so their
    values never pass through the operator or land in a child's spec. AWS_REGION is optional:
    a Secret without it leaves the variable unset (or as the tenant's own env sets it). So is
    AWS_ENDPOINT_URL when the spec names no endpoint: a Secret may carry its store's address
    along with its keys (the local cluster's does), so one spec works against any store."""
    env: list[Manifest] = []
    if endpoint:
        env.append({"name": ENDPOINT_KEY, "value": endpoint.rstrip("/")})
    if credentials_secret:
        env += [
            {
                "name": key,
                "valueFrom": {"secretKeyRef": {"name": credentials_secret, "key": key}},
            }
            for key in CREDENTIAL_KEYS
        ]
        optional = (REGION_KEY,) if endpoint else (REGION_KEY, ENDPOINT_KEY)
        env += [
            {
                "name": key,
                "valueFrom": {
                    "secretKeyRef": {"name": credentials_secret, "key": key, "optional": True}
                },
            }
            for key in optional
        ]
    return env


def config_map_file(
    volume: str, config_map: str, key: str, directory: str
) -> tuple[Manifest, Manifest]:
    """A volume holding one key of a ConfigMap (a CA bundle), and its read-only mount."""
    return (
        {"name": volume, "configMap": {"name": config_map, "items": [{"key": key, "path": key}]}},
        {"name": volume, "mountPath": directory, "readOnly": True},
    )


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


def _required_terms(pod_spec: Manifest) -> list[Manifest]:
    node: Any = pod_spec
    for key in REQUIRED_NODE_AFFINITY:
        node = node.get(key) if isinstance(node, dict) else None
    terms = node.get("nodeSelectorTerms") if isinstance(node, dict) else None
    return [t for t in terms if isinstance(t, dict)] if isinstance(terms, list) else []


def narrow(base: Manifest, override: Manifest) -> tuple[Manifest, Manifest]:
    """The generated pod spec with the override's required node-affinity terms AND-ed into each
    of its own, and the override without them. The scheduler ORs the terms of a list, so the
    plain merge (which appends lists) would let a user's term widen placement: (H100 and spot)
    or zone=a. Each pair of a generated and a user term becomes one term instead. A nodeSelector
    needs nothing of the kind: the scheduler ANDs it with the affinity, and no generated
    requirement lives in one that a user's key could replace."""
    wanted = _required_terms(override)
    if not wanted:
        return base, override
    ours = _required_terms(base)
    terms = [
        {
            key: merged
            for key in ("matchExpressions", "matchFields")
            if (merged := [*(g.get(key) or []), *(u.get(key) or [])])
        }
        for g in ours or [{}]
        for u in wanted
    ]
    base, override = copy.deepcopy(base), copy.deepcopy(override)
    required = override[REQUIRED_NODE_AFFINITY[0]][REQUIRED_NODE_AFFINITY[1]][
        REQUIRED_NODE_AFFINITY[2]
    ]
    del required["nodeSelectorTerms"]
    node = base
    for key in REQUIRED_NODE_AFFINITY:
        node = node.setdefault(key, {})
    node["nodeSelectorTerms"] = terms
    return base, override


def restricted_defaults(pod_spec: Manifest) -> Manifest:
    """The restricted Pod Security profile wherever the pod spec leaves a field unset: non-root,
    RuntimeDefault seccomp, every container (a user's sidecars too) without privilege escalation
    and with ALL capabilities dropped (what it adds back, it still gets). What a spec sets
    explicitly is kept; the workload policy decides whether it may."""
    spec = copy.deepcopy(pod_spec)
    containers = [c for kind in ("initContainers", "containers") for c in spec.get(kind) or []]
    pod = spec["securityContext"] = dict(spec.get("securityContext") or {})
    contexts = [pod] + [c.get("securityContext") or {} for c in containers]
    # A pod that asks for root anywhere runs as root there; runAsNonRoot would stop it starting.
    if all(c.get("runAsUser") != 0 for c in contexts):
        _default(pod, "runAsNonRoot", True)
    _default(pod, "seccompProfile", {"type": "RuntimeDefault"})
    for container in containers:
        context = container["securityContext"] = dict(container.get("securityContext") or {})
        capabilities = context["capabilities"] = dict(context.get("capabilities") or {})
        if not context.get("privileged") and not _ESCALATING & set(capabilities.get("add") or []):
            _default(context, "allowPrivilegeEscalation", False)
        drop = list(capabilities.get("drop") or [])
        capabilities["drop"] = drop if "ALL" in drop else [*drop, "ALL"]
    return spec


def _default(mapping: Manifest, key: str, value: Any) -> None:
    if mapping.get(key) is None:
        mapping[key] = value


def template(workload: Workload, labels: dict[str, str], pod_spec: Manifest) -> Manifest:
    """The pod template: our labels win over the escape hatch's, its spec merges over ours
    (placement only narrows), and what is still unset gets the restricted defaults."""
    meta: Manifest = {"labels": dict(labels), "annotations": {}}
    override = workload.pod_template
    if override and override.metadata:
        meta["labels"] = {**override.metadata.labels, **labels}
        meta["annotations"] = dict(override.metadata.annotations)
    if override and override.spec:
        base, extra = narrow(pod_spec, override.spec.model_dump(by_alias=True, exclude_none=True))
        pod_spec = merge_pod_spec(base, extra)
    return {"metadata": meta, "spec": restricted_defaults(pod_spec)}
