"""What the KServe and Argo Rollouts converters share: a source's container and pod spec mapped
onto a Stratus InferenceService's fields, its metadata, and the final check against the model."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from typing import Any

from pydantic import ValidationError

from stratus.api.common import API_VERSION
from stratus.api.inferenceservice import KIND, MAX_NAME_LENGTH, InferenceServiceSpec
from stratus.convert.report import Conversion, Manifest, whole
from stratus.podspec import GPU_PRODUCT_LABEL

CONVERTED_FROM = "stratus.dev/converted-from"
# Stratus always stages a model; a source that names none it can stage gets this address. The
# .invalid domain never resolves (RFC 2606), so a resource applied unedited fails staging loudly
# instead of serving something else.
PLACEHOLDER_MODEL_URI = "https://model.invalid/set-spec-model-uri"
# KServe's storage initializer writes the model here; Stratus stages it into MODEL_DIR.
KSERVE_MODEL_DIR = "/mnt/models"
MODEL_DIR = "/models"
GPU_RESOURCE = "nvidia.com/gpu"
# Pod fields a podTemplate override carries exactly as written.
POD_FIELDS = {
    "nodeSelector",
    "tolerations",
    "affinity",
    "serviceAccountName",
    "imagePullSecrets",
    "priorityClassName",
    "schedulerName",
    "securityContext",
    "runtimeClassName",
    "topologySpreadConstraints",
    "hostAliases",
    "dnsPolicy",
    "dnsConfig",
    "terminationGracePeriodSeconds",
    "enableServiceLinks",
    "automountServiceAccountToken",
}
_MOUNT_FIELDS = ("name", "mountPath", "subPath", "readOnly")
_NOT_DNS = re.compile(r"[^a-z0-9-]+")


def mapping(node: Any) -> dict[str, Any]:
    """A mapping, or an empty one for anything else."""
    return node if isinstance(node, dict) else {}


def required_mapping(node: Any, path: str) -> dict[str, Any]:
    if not isinstance(node, dict):
        raise ValueError(f"{path} must be a mapping")
    return node


def guarded(conv: Conversion, build: Callable[[], list[Conversion]]) -> list[Conversion]:
    """What `build` converts; a document it cannot read ends as `conv` with the one line why,
    so the rest of the input still converts."""
    try:
        return build()
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        conv.error = f"cannot convert: {exc}"
        conv.notes.clear()
        return [conv]


def text(value: Any) -> str:
    """A scalar as the string Kubernetes would read from YAML (True is "true")."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def service_name(name: str, conv: Conversion, path: str = "metadata.name") -> str:
    """`name` as a DNS-1035 label of at most MAX_NAME_LENGTH characters (the Service's name)."""
    safe = _NOT_DNS.sub("-", name.lower()).strip("-")
    if not safe or not safe[0].isalpha():
        safe = "svc-" + safe
    safe = safe[:MAX_NAME_LENGTH].rstrip("-")
    if safe != name:
        conv.note(
            path,
            "changed",
            f"{name!r} is not a DNS-1035 label of at most {MAX_NAME_LENGTH} characters "
            f"(the Service named after it must be): renamed {safe!r}",
            "update whatever calls the service by its old name",
        )
    return safe


def metadata(
    meta: dict[str, Any], kind: str, conv: Conversion, consumed: Collection[str] = ()
) -> Manifest:
    """The resource's metadata: a safe name, the namespace, labels and annotations carried (less
    those a converter read as settings), and where it came from."""
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError("metadata.name missing")
    out: Manifest = {"name": service_name(name, conv)}
    if isinstance(meta.get("namespace"), str):
        out["namespace"] = meta["namespace"]
    labels = meta.get("labels")
    if isinstance(labels, dict) and labels:
        out["labels"] = {str(k): text(v) for k, v in labels.items()}
    annotations: dict[str, str] = {}
    raw = meta.get("annotations")
    for key, value in (raw if isinstance(raw, dict) else {}).items():
        if key in consumed:
            continue
        if key == "kubectl.kubernetes.io/last-applied-configuration":
            conv.note(f"metadata.annotations.{key}", "dropped", "kubectl's record of the source")
            continue
        annotations[str(key)] = text(value)
    annotations[CONVERTED_FROM] = f"{kind}/{name}"
    out["annotations"] = annotations
    for key in meta:
        if key not in {"name", "namespace", "labels", "annotations"}:
            conv.note(f"metadata.{key}", "dropped", "set by the cluster, not by the author")
    return out


def _resources(res: Any, path: str, conv: Conversion) -> Manifest:
    if not isinstance(res, dict):
        return {"gpu": 0}
    limits, requests = mapping(res.get("limits")), mapping(res.get("requests"))
    out: Manifest = {}
    gpus = limits.get(GPU_RESOURCE, requests.get(GPU_RESOURCE, 0))
    out["gpu"] = whole(gpus, f"{path}.limits.{GPU_RESOURCE}")
    for name in ("cpu", "memory"):
        limit, request = limits.get(name), requests.get(name)
        value = limit if limit is not None else request
        if value is None:
            continue
        out[name] = value if isinstance(value, int) and not isinstance(value, bool) else text(value)
        if limit is None:
            conv.note(
                f"{path}.requests.{name}",
                "changed",
                "Stratus sets one value as request and limit: the request is now also the limit",
            )
        elif request is not None and text(request) != text(limit):
            conv.note(
                f"{path}.requests.{name}",
                "changed",
                f"Stratus sets one value as request and limit: the limit {text(limit)} is both",
            )
    for where, values in (("limits", limits), ("requests", requests)):
        for name in values:
            if name not in {"cpu", "memory", GPU_RESOURCE}:
                conv.note(
                    f"{path}.{where}.{name}",
                    "dropped",
                    "Stratus requests CPU, memory and nvidia.com/gpu only",
                    "ask the cluster admin for a policy that adds it, or use a GPU Stratus knows",
                )
    for key in res:
        if key not in {"limits", "requests"}:
            conv.note(f"{path}.{key}", "dropped", "not a resource setting Stratus carries")
    return out


def _probe_path(probe: Any, path: str, conv: Conversion, kind: str) -> str | None:
    if not isinstance(probe, dict):
        return None
    http = mapping(probe.get("httpGet"))
    found = http.get("path")
    reason = (
        "Stratus probes readinessPath over HTTP on the server's port, with its own timings, "
        "for readiness and liveness"
    )
    if kind == "readinessProbe" and isinstance(found, str) and found.startswith("/"):
        if set(probe) != {"httpGet"} or set(http) - {"path", "port"}:
            conv.note(path, "changed", reason + ": the probe's other settings are not kept")
        return found
    conv.note(
        path,
        "changed",
        reason + ("" if kind == "readinessProbe" else f": the {kind} is replaced"),
        "set spec.readinessPath to a path the server answers when ready"
        if kind == "readinessProbe"
        else "",
    )
    return None


def _rewrite_model_dir(values: list[str], path: str, conv: Conversion) -> list[str]:
    out = [v.replace(KSERVE_MODEL_DIR, MODEL_DIR) for v in values]
    if out != values:
        conv.note(path, "changed", f"the model is staged into {MODEL_DIR}, not {KSERVE_MODEL_DIR}")
    return out


def container_fields(container: dict[str, Any], path: str, conv: Conversion) -> Manifest:
    """The spec fields a source's serving container gives, each field it has noted if not kept."""
    out: Manifest = {}
    for key, value in container.items():
        where = f"{path}.{key}"
        if key == "name":
            continue
        if key == "image":
            out["image"] = text(value)
        elif key in {"command", "args"}:
            out[key] = _rewrite_model_dir([text(v) for v in value], where, conv)
        elif key == "env":
            out["env"] = [_env(e, f"{where}[{i}]", conv) for i, e in enumerate(value)]
        elif key == "envFrom":
            out["envFrom"] = value
        elif key == "workingDir":
            out["workingDir"] = text(value)
        elif key == "volumeMounts":
            out["volumeMounts"] = [_mount(m, f"{where}[{i}]", conv) for i, m in enumerate(value)]
        else:
            out.update(_container_field(key, value, where, conv))
    out.setdefault("resources", {"gpu": 0})
    return out


def _container_field(key: str, value: Any, where: str, conv: Conversion) -> Manifest:
    out: Manifest = {}
    if key == "resources":
        out["resources"] = _resources(value, where, conv)
    elif key == "ports":
        ports = [p for p in value if isinstance(p, dict) and "containerPort" in p]
        if ports:
            out["port"] = whole(ports[0]["containerPort"], f"{where}[0].containerPort")
        if len(value) > 1:
            conv.note(
                f"{where}[1:]",
                "dropped",
                "Stratus serves one HTTP port (the first)",
                "serve everything on that port",
            )
    elif key in {"readinessProbe", "livenessProbe", "startupProbe"}:
        found = _probe_path(value, where, conv, key)
        if found:
            out["readinessPath"] = found
    elif key in {"imagePullPolicy", "terminationMessagePath", "terminationMessagePolicy"}:
        conv.note(where, "dropped", "Stratus sets it on the containers it builds")
    else:
        conv.note(
            where,
            "dropped",
            "Stratus builds the server container itself and has no field for it",
            "ask the cluster admin whether a workload policy can set it",
        )
    return out


def _env(entry: Any, path: str, conv: Conversion) -> Manifest:
    out: Manifest = {"name": text(entry["name"])}
    if "value" in entry:
        value = text(entry["value"])
        out["value"] = _rewrite_model_dir([value], path, conv)[0]
    if "valueFrom" in entry:
        out["valueFrom"] = entry["valueFrom"]
    return out


def _mount(mount: Any, path: str, conv: Conversion) -> Manifest:
    out: Manifest = {k: mount[k] for k in _MOUNT_FIELDS if k in mount}
    for key in mount:
        if key not in _MOUNT_FIELDS:
            conv.note(
                f"{path}.{key}", "dropped", "Stratus mounts name, mountPath, subPath, readOnly"
            )
    return out


def pod_fields(
    pod: dict[str, Any], path: str, conv: Conversion, own: set[str]
) -> tuple[Manifest, Manifest]:
    """The spec fields (volumes, gpuType) and podTemplate.spec a source's pod spec gives; `own`
    are the keys the caller maps itself."""
    spec: Manifest = {}
    override: Manifest = {}
    for key, value in pod.items():
        if key in own:
            continue
        if key == "volumes":
            spec["volumes"] = value
        elif key == "nodeSelector" and isinstance(value, dict):
            selector = dict(value)
            if GPU_PRODUCT_LABEL in selector:
                spec["gpuType"] = text(selector.pop(GPU_PRODUCT_LABEL))
            if selector:
                override["nodeSelector"] = selector
        elif key in POD_FIELDS:
            override[key] = value
        else:
            conv.note(
                f"{path}.{key}",
                "dropped",
                "not a pod setting a Stratus InferenceService carries",
                "ask the cluster admin whether a workload policy can set it",
            )
    return spec, override


def assemble(
    conv: Conversion,
    meta: Manifest,
    container: Manifest,
    pod: Manifest,
    override: Manifest,
    pod_meta: Manifest | None = None,
) -> Manifest:
    """The spec put together from the container's and the pod's fields."""
    spec: Manifest = dict(container)
    gpu_type = pod.pop("gpuType", None)
    if gpu_type is not None:
        if spec["resources"].get("gpu", 0) > 0:
            spec["resources"]["gpuType"] = gpu_type
        else:
            conv.note(
                f"nodeSelector.{GPU_PRODUCT_LABEL}",
                "dropped",
                "gpuType applies only to a server that requests GPUs",
            )
    spec.update(pod)
    if override or pod_meta:
        template: Manifest = {}
        if pod_meta:
            template["metadata"] = pod_meta
        if override:
            template["spec"] = override
        spec["podTemplate"] = template
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": meta, "spec": spec}


def finish(conv: Conversion, resource: Manifest) -> list[Conversion]:
    """The conversion with its resource, or with an error if the model refuses it."""
    try:
        InferenceServiceSpec.model_validate(resource["spec"])
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        conv.error = f"the converted spec is not valid at spec.{where}: {first['msg']}"
        return [conv]
    conv.resources.append(resource)
    return [conv]
