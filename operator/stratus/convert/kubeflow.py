"""Kubeflow training jobs (PyTorchJob, TFJob, MPIJob, TrainJob) and plain batch/v1 Jobs that
request GPUs, as Stratus TrainingJobs: one worker shape, the same container on every worker."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from stratus.api.common import API_VERSION
from stratus.api.trainingjob import KIND, MAX_NAME_LENGTH, TrainingJobSpec
from stratus.convert.report import Conversion, Manifest, UnsupportedInput

GPU = "nvidia.com/gpu"
GPU_PRODUCT = "nvidia.com/gpu.product"
CONVERTED_FROM = "stratus.dev/converted-from"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
# Set by the API server, not by whoever wrote the workload: nothing of the workload is lost.
SERVER_METADATA = {
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "managedFields",
    "generation",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
}
# What the Job controller stamps on its pods (seen in objects read back from a cluster): the
# labels of the old Job, which would contradict the selector of each attempt's new Job.
SERVER_LABELS = {
    "controller-uid",
    "job-name",
    "batch.kubernetes.io/controller-uid",
    "batch.kubernetes.io/job-name",
}
SKIPPED_ANNOTATIONS = {"kubectl.kubernetes.io/last-applied-configuration"}
# Node labels and taints that mean spot capacity on the clouds and provisioners we know.
SPOT_LABELS = {
    "cloud.google.com/gke-spot": "true",
    "cloud.google.com/gke-preemptible": "true",
    "eks.amazonaws.com/capacityType": "SPOT",
    "karpenter.sh/capacity-type": "spot",
    "kubernetes.azure.com/scalesetpriority": "spot",
}
CHECKPOINT_WORDS = re.compile(r"checkpoint|ckpt", re.IGNORECASE)
NO_CHECKPOINT_TODO = (
    "set spec.checkpoint (a PersistentVolumeClaim or an s3:// uri), save checkpoints under "
    "STRATUS_CHECKPOINT_DIR and resume from STRATUS_RESUME_FROM; then enable spec.spot"
)
# Container fields the simple form carries; the rest go to the pod template override.
CONTAINER_FIELDS = {
    "name",
    "image",
    "command",
    "args",
    "env",
    "envFrom",
    "workingDir",
    "volumeMounts",
    "resources",
}
MOUNT_FIELDS = {"name", "mountPath", "subPath", "readOnly"}
# Pod fields Stratus sets itself from its own spec, or must not be given.
POD_FIELDS_OWN = {"containers", "volumes", "restartPolicy", "terminationGracePeriodSeconds"}
# Images of the Kubeflow Trainer runtimes whose TrainJobs often name no image of their own.
RUNTIME_IMAGES = {
    "torch-distributed": "pytorch/pytorch:2.7.1-cuda12.8-cudnn9-runtime",
}


class _Builder:
    """Collects a TrainingJob spec and the notes of one source document."""

    def __init__(self, conversion: Conversion, doc: dict[str, Any]) -> None:
        self.c = conversion
        self.doc = doc
        self.spec: dict[str, Any] = {}
        self.pod_override: dict[str, Any] = {}
        self.pod_metadata: dict[str, Any] = {}
        self.queue: str | None = None
        self.train_container: dict[str, Any] = {}

    # Notes
    def dropped(self, path: str, reason: str, todo: str = "") -> None:
        self.c.note(path, "dropped", reason, todo)

    def changed(self, path: str, reason: str, todo: str = "") -> None:
        self.c.note(path, "changed", reason, todo)

    def action(self, path: str, reason: str, todo: str = "") -> None:
        self.c.note(path, "action", reason, todo)

    def unknown(self, path: str, value: dict[str, Any], known: set[str]) -> None:
        for key in value:
            if key not in known:
                self.dropped(f"{path}.{key}", "not a field this converter knows")

    # The pod template of the replica (or Job) that becomes the workers
    def pod(self, template: Any, path: str, container_name: str | None) -> None:
        if not isinstance(template, dict):
            raise UnsupportedInput(f"{path}: missing or not a pod template")
        meta = template.get("metadata") or {}
        if isinstance(meta, dict):
            for key in ("labels", "annotations"):
                kept = {k: v for k, v in (meta.get(key) or {}).items() if k not in SERVER_LABELS}
                if kept:
                    self.pod_metadata[key] = kept
            self.unknown(f"{path}.metadata", meta, {"labels", "annotations", "name"})
        spec = template.get("spec")
        if not isinstance(spec, dict):
            raise UnsupportedInput(f"{path}.spec: missing or not a pod spec")
        spec = copy.deepcopy(spec)
        containers = spec.get("containers")
        if not isinstance(containers, list) or not containers:
            raise UnsupportedInput(f"{path}.spec.containers: no containers")
        main = _main_container(containers, container_name)
        self.container(main, f"{path}.spec.containers[{main.get('name', 0)}]")
        sidecars = [c for c in containers if c is not main]
        if sidecars:
            self.pod_override.setdefault("containers", []).extend(sidecars)
            self.changed(
                f"{path}.spec.containers",
                f"{len(sidecars)} more container(s) kept as sidecars in podTemplate",
            )
        self.volumes(spec.get("volumes") or [], path)
        self.pod_spec(spec, path)

    def pod_spec(self, spec: dict[str, Any], path: str) -> None:
        """The pod-level fields: some have a place in the spec, the rest go to podTemplate."""
        if "restartPolicy" in spec:
            self.changed(
                f"{path}.spec.restartPolicy",
                "Stratus restarts a failed attempt as a whole (spec.retry), never a pod alone",
            )
        grace = spec.get("terminationGracePeriodSeconds")
        if isinstance(grace, int) and 0 <= grace <= 3600:
            self.spec["terminationGracePeriodSeconds"] = grace
        elif grace is not None:
            self.changed(
                f"{path}.spec.terminationGracePeriodSeconds", "out of range 0-3600: default 120s"
            )
        if spec.get("nodeName") is not None:
            self.dropped(
                f"{path}.spec.nodeName",
                "Stratus places pods by GPU type and capacity",
                "use a nodeSelector",
            )
        self.placement(spec, path)
        if isinstance(spec.get("priorityClassName"), str):
            self.spec["priorityClassName"] = spec["priorityClassName"]
        for key, value in spec.items():
            if key in POD_FIELDS_OWN or key in {"nodeName", "priorityClassName"}:
                continue
            self.pod_override[key] = value

    def container(self, main: dict[str, Any], path: str) -> None:
        if not isinstance(main.get("image"), str) or not main["image"]:
            raise UnsupportedInput(f"{path}.image: missing")
        self.spec["image"] = main["image"]
        for key in ("command", "args", "env", "envFrom", "workingDir", "volumeMounts"):
            if main.get(key):
                self.spec[key] = copy.deepcopy(main[key])
        self.resources(main.get("resources") or {}, f"{path}.resources")
        plain = [m for m in self.spec.get("volumeMounts", []) if set(m) <= MOUNT_FIELDS]
        if len(plain) != len(self.spec.get("volumeMounts", [])):
            # subPathExpr, mountPropagation...: the simple form has no place for them.
            self.train_container["volumeMounts"] = [
                m for m in self.spec["volumeMounts"] if m not in plain
            ]
            self.spec["volumeMounts"] = plain
            self.changed(
                f"{path}.volumeMounts",
                "mounts with fields beyond name, mountPath, subPath and readOnly kept through "
                "podTemplate on the container `train`",
            )
        if main.get("ports"):
            self.dropped(
                f"{path}.ports",
                "Stratus opens the rendezvous port (MASTER_PORT) itself",
                "add other ports through podTemplate on the container `train`",
            )
        extra = {k: v for k, v in main.items() if k not in CONTAINER_FIELDS | {"ports"}}
        if extra:
            self.train_container.update(extra)
            self.changed(
                path,
                f"{', '.join(sorted(extra))} kept through podTemplate on the container `train`",
            )
        if self.train_container:
            # Merged by name into the generated container.
            self.pod_override.setdefault("containers", []).insert(
                0, {"name": "train", **self.train_container}
            )

    def resources(self, resources: dict[str, Any], path: str) -> None:
        limits = resources.get("limits") or {}
        requests = resources.get("requests") or {}
        gpu = limits.get(GPU, requests.get(GPU, 0))
        try:
            gpus = int(gpu)
        except (TypeError, ValueError):
            raise UnsupportedInput(f"{path}.limits.{GPU}: not a whole number: {gpu!r}") from None
        out: dict[str, Any] = {"gpu": gpus}
        for name in ("cpu", "memory"):
            value = limits.get(name, requests.get(name))
            if value is not None:
                out[name] = str(value)
                if name in limits and name in requests and str(limits[name]) != str(requests[name]):
                    self.changed(
                        f"{path}.requests.{name}",
                        f"Stratus requests what it limits: {value}",
                    )
        extra = {
            kind: {k: v for k, v in values.items() if k not in {GPU, "cpu", "memory"}}
            for kind, values in (("limits", limits), ("requests", requests))
        }
        extra = {kind: values for kind, values in extra.items() if values}
        if extra:
            # Merged into the generated container's resources, key by key.
            self.train_container["resources"] = extra
            self.changed(
                f"{path}.limits",
                f"{', '.join(sorted({k for v in extra.values() for k in v}))} kept through "
                "podTemplate on the container `train`",
            )
        self.unknown(path, resources, {"limits", "requests"})
        self.spec["resources"] = out

    def volumes(self, volumes: list[Any], path: str) -> None:
        mounts = self.spec.get("volumeMounts") or []
        for volume in volumes:
            claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
            mount = next((m for m in mounts if m.get("name") == volume.get("name")), None)
            if (
                claim
                and mount
                and "checkpoint" not in self.spec
                and CHECKPOINT_WORDS.search(f"{volume.get('name')} {claim} {mount['mountPath']}")
            ):
                self.spec["checkpoint"] = {
                    "persistentVolumeClaim": claim,
                    "mountPath": mount["mountPath"],
                }
                mounts.remove(mount)
                self.changed(
                    f"{path}.spec.volumes[{volume['name']}]",
                    f"became spec.checkpoint: claim {claim} at {mount['mountPath']}",
                    "save checkpoints under STRATUS_CHECKPOINT_DIR (the same path) and resume "
                    "from STRATUS_RESUME_FROM",
                )
                continue
            self.spec.setdefault("volumes", []).append(volume)
        if not mounts:
            self.spec.pop("volumeMounts", None)

    def placement(self, spec: dict[str, Any], path: str) -> None:
        selector = dict(spec.get("nodeSelector") or {})
        product = selector.pop(GPU_PRODUCT, None)
        if isinstance(product, str):
            self.spec.setdefault("resources", {})["gpuType"] = product
        spot = False
        for label, value in SPOT_LABELS.items():
            if str(selector.get(label, "")).lower() == value.lower():
                selector.pop(label)
                spot = True
        if selector:
            spec["nodeSelector"] = selector
        else:
            spec.pop("nodeSelector", None)
        tolerations = [t for t in spec.get("tolerations") or [] if t.get("key") not in SPOT_LABELS]
        if len(tolerations) != len(spec.get("tolerations") or []):
            spot = True
        if tolerations:
            spec["tolerations"] = tolerations
        else:
            spec.pop("tolerations", None)
        if spot:
            self.spec["spot"] = {"enabled": True}
            self.changed(
                f"{path}.spec.nodeSelector",
                "spot capacity labels and tolerations became spec.spot.enabled",
            )

    def run_policy(self, policy: Any, path: str) -> None:
        if not isinstance(policy, dict):
            return
        if isinstance(policy.get("activeDeadlineSeconds"), int):
            self.spec["activeDeadlineSeconds"] = max(1, policy["activeDeadlineSeconds"])
        if isinstance(policy.get("ttlSecondsAfterFinished"), int):
            self.spec["ttlSecondsAfterFinished"] = max(0, policy["ttlSecondsAfterFinished"])
        if isinstance(policy.get("backoffLimit"), int):
            self.spec["retry"] = {"maxRestarts": min(1000, max(0, policy["backoffLimit"]))}
            self.changed(
                f"{path}.backoffLimit",
                "now counts failed attempts of the whole job (retry.maxRestarts), not pod "
                "restarts; preemptions are counted apart (spot.maxPreemptions)",
            )
        if isinstance(policy.get("suspend"), bool):
            self.spec["suspend"] = policy["suspend"]
        if "cleanPodPolicy" in policy:
            self.dropped(
                f"{path}.cleanPodPolicy", "Stratus removes each attempt's pods with its Job"
            )
        if "managedBy" in policy:
            self.dropped(f"{path}.managedBy", "Stratus manages its TrainingJobs itself")
        scheduling = policy.get("schedulingPolicy")
        if isinstance(scheduling, dict):
            self.scheduling(scheduling, f"{path}.schedulingPolicy")
        self.unknown(
            path,
            policy,
            {
                "activeDeadlineSeconds",
                "ttlSecondsAfterFinished",
                "backoffLimit",
                "suspend",
                "cleanPodPolicy",
                "managedBy",
                "schedulingPolicy",
            },
        )

    def scheduling(self, policy: dict[str, Any], path: str) -> None:
        if isinstance(policy.get("queue"), str):
            self.queue = policy["queue"]
            self.changed(
                f"{path}.queue",
                "became spec.queueName, a Kueue LocalQueue (not a Volcano queue)",
                "create the LocalQueue, or remove queueName",
            )
        if isinstance(policy.get("priorityClass"), str):
            self.spec["priorityClassName"] = policy["priorityClass"]
        if "minAvailable" in policy:
            self.changed(
                f"{path}.minAvailable", "Stratus starts and restarts all workers as one attempt"
            )
        for key in ("minResources", "scheduleTimeoutSeconds"):
            if key in policy:
                self.dropped(f"{path}.{key}", "Stratus has no gang-scheduling settings")
        self.unknown(
            path,
            policy,
            {"queue", "priorityClass", "minAvailable", "minResources", "scheduleTimeoutSeconds"},
        )

    def finish(self, source_kind: str) -> list[Manifest]:
        spec = self.spec
        if "checkpoint" not in spec:
            self.action("(checkpoint)", "the job never checkpointed", NO_CHECKPOINT_TODO)
            if (spec.get("spot") or {}).get("enabled"):
                spec["spot"]["enabled"] = False
                self.changed(
                    "(spot)",
                    "the job ran on spot capacity but keeps no checkpoint: on-demand until it does",
                )
        if self.pod_metadata or self.pod_override:
            spec["podTemplate"] = {}
            if self.pod_metadata:
                spec["podTemplate"]["metadata"] = self.pod_metadata
            if self.pod_override:
                spec["podTemplate"]["spec"] = self.pod_override
        metadata = self.metadata(source_kind)
        if self.queue and "queueName" not in spec:
            spec["queueName"] = self.queue
        resource = {"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata, "spec": spec}
        try:
            TrainingJobSpec.model_validate(spec)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise UnsupportedInput(f"spec.{where}: {first['msg']}") from None
        return [resource]

    def metadata(self, source_kind: str) -> dict[str, Any]:
        meta = self.doc.get("metadata")
        if not isinstance(meta, dict):
            raise UnsupportedInput("metadata.name: missing")
        meta = dict(meta)
        if not isinstance(meta.get("name"), str) and isinstance(meta.get("generateName"), str):
            meta["name"] = meta.pop("generateName").rstrip("-")
            self.changed("metadata.generateName", f"a TrainingJob has a fixed name: {meta['name']}")
        if not isinstance(meta.get("name"), str) or not meta["name"]:
            raise UnsupportedInput("metadata.name: missing")
        name = meta["name"]
        if len(name) > MAX_NAME_LENGTH:
            short = name[:MAX_NAME_LENGTH].rstrip("-.")
            self.changed("metadata.name", f"longer than {MAX_NAME_LENGTH}: shortened to {short}")
            name = short
        out: dict[str, Any] = {"name": name}
        if isinstance(meta.get("namespace"), str):
            out["namespace"] = meta["namespace"]
        labels = dict(meta.get("labels") or {})
        queue = labels.pop(QUEUE_LABEL, None)
        if isinstance(queue, str):
            self.spec["queueName"] = queue
        if labels:
            out["labels"] = labels
        annotations = {
            k: v for k, v in (meta.get("annotations") or {}).items() if k not in SKIPPED_ANNOTATIONS
        }
        annotations[CONVERTED_FROM] = f"{source_kind}/{meta['name']}"
        out["annotations"] = annotations
        for key in meta:
            if key not in {"name", "namespace", "labels", "annotations"} | SERVER_METADATA:
                self.dropped(f"metadata.{key}", "not carried to the TrainingJob")
        return out


def _main_container(containers: list[Any], name: str | None) -> dict[str, Any]:
    for container in containers:
        if isinstance(container, dict) and name is not None and container.get("name") == name:
            return container
    gpu = [c for c in containers if isinstance(c, dict) and _gpus(c)]
    first = gpu[0] if gpu else containers[0]
    if not isinstance(first, dict):
        raise UnsupportedInput("spec.containers[0]: not a container")
    return first


def _gpus(container: dict[str, Any]) -> bool:
    resources = container.get("resources") or {}
    return any(GPU in (resources.get(k) or {}) for k in ("limits", "requests"))


def _start(doc: Any, source: str, kind: str) -> tuple[_Builder, dict[str, Any]]:
    if not isinstance(doc, dict):
        raise UnsupportedInput("not a Kubernetes object")
    meta = doc.get("metadata")
    name = meta.get("name", "") if isinstance(meta, dict) else ""
    conversion = Conversion(source=source, kind=f"{doc.get('apiVersion')} {kind}", name=str(name))
    spec = doc.get("spec")
    if not isinstance(spec, dict):
        raise UnsupportedInput("spec: missing")
    builder = _Builder(conversion, doc)
    for key in doc:
        if key not in {"apiVersion", "kind", "metadata", "spec", "status"}:
            builder.dropped(key, "not a field this converter knows")
    return builder, spec


def _guarded(doc: Any, source: str, kind: str, body: Any) -> list[Conversion]:
    """Runs one conversion; a malformed document becomes its one-line error."""
    meta = doc.get("metadata") if isinstance(doc, dict) else None
    name = str(meta.get("name", "")) if isinstance(meta, dict) else ""
    api = doc.get("apiVersion") if isinstance(doc, dict) else None
    try:
        builder, spec = _start(doc, source, kind)
        body(builder, spec)
        builder.c.resources = builder.finish(kind)
        return [builder.c]
    except UnsupportedInput as exc:
        return [Conversion(source=source, kind=f"{api} {kind}", name=name, error=str(exc))]
    except (TypeError, AttributeError, ValueError, KeyError) as exc:
        return [
            Conversion(source=source, kind=f"{api} {kind}", name=name, error=f"malformed: {exc}")
        ]


def _replicas(spec: dict[str, Any], field: str, role: str) -> int:
    value = spec.get("replicas", 1)
    if not isinstance(value, int) or value < 0:
        raise UnsupportedInput(f"{field}.{role}.replicas: not a whole number: {value!r}")
    return value


def _replica_job(
    b: _Builder,
    spec: dict[str, Any],
    field: str,
    roles: dict[str, str],
    worker_roles: tuple[str, ...],
    container: str,
) -> dict[str, Any]:
    """Replica specs in the shape all Kubeflow v1 jobs share: the roles that become workers
    must run the same pod; returns the replica spec whose pod template the workers take."""
    replicas = spec.get(field)
    if not isinstance(replicas, dict) or not replicas:
        raise UnsupportedInput(f"spec.{field}: missing")
    workers = 0
    chosen: dict[str, Any] | None = None
    for role, replica in replicas.items():
        path = f"spec.{field}.{role}"
        if not isinstance(replica, dict):
            raise UnsupportedInput(f"{path}: not a replica spec")
        if role not in roles:
            b.dropped(path, f"a {role} replica Stratus has no place for")
            continue
        if role not in worker_roles:
            b.dropped(path, roles[role])
            continue
        workers += _replicas(replica, f"spec.{field}", role)
        if chosen is None or role == "Worker":
            if chosen is not None and chosen.get("template") != replica.get("template"):
                b.changed(
                    f"{path}.template",
                    "the roles' pod templates differ: every worker runs the Worker's",
                    "let the program tell rank 0 (NODE_RANK) from the others",
                )
            chosen = replica
        b.unknown(path, replica, {"replicas", "template", "restartPolicy"})
        if "restartPolicy" in replica:
            b.changed(
                f"{path}.restartPolicy",
                "Stratus restarts a failed attempt as a whole; preemptions restart at once",
                "list retryable exit codes in spec.retry.retryableExitCodes",
            )
    if chosen is None or workers == 0:
        raise UnsupportedInput(f"spec.{field}: no {' or '.join(worker_roles)} replicas")
    role = next(r for r, v in replicas.items() if v is chosen)
    b.pod(chosen.get("template"), f"spec.{field}.{role}.template", container)
    b.spec["workers"] = workers
    return chosen


def convert_pytorchjob(doc: dict[str, Any] | str, source: str) -> list[Conversion]:
    def body(b: _Builder, spec: dict[str, Any]) -> None:
        roles = {"Master": "", "Worker": ""}
        _replica_job(b, spec, "pytorchReplicaSpecs", roles, ("Master", "Worker"), "pytorch")
        elastic = spec.get("elasticPolicy")
        if isinstance(elastic, dict):
            b.dropped(
                "spec.elasticPolicy",
                f"Stratus runs a fixed number of workers ({b.spec['workers']}); elastic "
                "training is not offered yet",
                "size workers for the run; a preemption restarts all of them from the last "
                "checkpoint",
            )
        nproc = spec.get("nprocPerNode")
        if nproc is not None:
            b.changed(
                "spec.nprocPerNode",
                "Stratus does not set PET_NPROC_PER_NODE",
                f"pass --nproc-per-node={nproc} to torchrun in args",
            )
        b.run_policy(spec.get("runPolicy"), "spec.runPolicy")
        b.unknown(
            "spec", spec, {"pytorchReplicaSpecs", "elasticPolicy", "nprocPerNode", "runPolicy"}
        )

    return _guarded(doc, source, "PyTorchJob", body)


def _single_role_job(
    kind: str, field: str, container: str, roles: dict[str, str]
) -> Callable[[dict[str, Any] | str, str], list[Conversion]]:
    """A Kubeflow v1 job whose replicas need nothing but the rendezvous Stratus gives."""

    def convert(doc: dict[str, Any] | str, source: str) -> list[Conversion]:
        def body(b: _Builder, spec: dict[str, Any]) -> None:
            _replica_job(b, spec, field, roles, tuple(r for r in roles if not roles[r]), container)
            b.run_policy(spec.get("runPolicy"), "spec.runPolicy")
            b.unknown("spec", spec, {field, "runPolicy"})

        return _guarded(doc, source, kind, body)

    return convert


convert_paddlejob = _single_role_job(
    "PaddleJob", "paddleReplicaSpecs", "paddle", {"Master": "", "Worker": ""}
)
convert_xgboostjob = _single_role_job(
    "XGBoostJob", "xgbReplicaSpecs", "xgboost", {"Master": "", "Worker": ""}
)
convert_jaxjob = _single_role_job("JAXJob", "jaxReplicaSpecs", "jax", {"Worker": ""})


def convert_tfjob(doc: dict[str, Any] | str, source: str) -> list[Conversion]:
    def body(b: _Builder, spec: dict[str, Any]) -> None:
        roles = {
            "Chief": "",
            "Master": "",
            "Worker": "",
            "PS": "Stratus has no parameter servers",
            "Evaluator": "Stratus runs no side evaluator",
        }
        _replica_job(b, spec, "tfReplicaSpecs", roles, ("Chief", "Master", "Worker"), "tensorflow")
        b.action(
            "spec.tfReplicaSpecs",
            "Stratus sets no TF_CONFIG: workers get MASTER_ADDR, NODE_RANK and WORLD_SIZE",
            "build TF_CONFIG from them, or use MultiWorkerMirroredStrategy with a cluster "
            "resolver that reads them",
        )
        if spec.get("enableDynamicWorker"):
            b.dropped("spec.enableDynamicWorker", "Stratus runs a fixed number of workers")
        if "successPolicy" in spec:
            b.changed("spec.successPolicy", "a Stratus attempt succeeds when every worker does")
        b.run_policy(spec.get("runPolicy"), "spec.runPolicy")
        b.unknown(
            "spec",
            spec,
            {"tfReplicaSpecs", "runPolicy", "enableDynamicWorker", "successPolicy"},
        )

    return _guarded(doc, source, "TFJob", body)


def convert_mpijob(doc: dict[str, Any] | str, source: str) -> list[Conversion]:
    def body(b: _Builder, spec: dict[str, Any]) -> None:
        replicas = spec.get("mpiReplicaSpecs")
        if not isinstance(replicas, dict):
            raise UnsupportedInput("spec.mpiReplicaSpecs: missing")
        launcher = replicas.get("Launcher")
        roles = {"Launcher": "Stratus starts no launcher pod", "Worker": ""}
        _replica_job(b, spec, "mpiReplicaSpecs", roles, ("Worker",), "")
        command = _launcher_command(launcher)
        if command:
            b.spec["command"], b.spec["args"] = command, []
            b.changed(
                "spec.mpiReplicaSpecs.Launcher",
                "the launcher's command runs on every worker: Stratus starts no launcher and "
                "no SSH",
                "replace mpirun with a per-worker launch (torchrun, or horovodrun with "
                "MASTER_ADDR/NODE_RANK)",
            )
        for key in (
            "slotsPerWorker",
            "sshAuthMountPath",
            "mpiImplementation",
            "launcherCreationPolicy",
        ):
            if key in spec:
                b.dropped(f"spec.{key}", "Stratus has no MPI launcher")
        b.run_policy(spec.get("runPolicy"), "spec.runPolicy")
        b.unknown(
            "spec",
            spec,
            {
                "mpiReplicaSpecs",
                "runPolicy",
                "slotsPerWorker",
                "sshAuthMountPath",
                "mpiImplementation",
                "launcherCreationPolicy",
                "cleanPodPolicy",
            },
        )
        if "cleanPodPolicy" in spec:
            b.dropped("spec.cleanPodPolicy", "Stratus removes each attempt's pods with its Job")

    return _guarded(doc, source, "MPIJob", body)


def _launcher_command(launcher: Any) -> list[str]:
    try:
        container = launcher["template"]["spec"]["containers"][0]
    except (KeyError, TypeError, IndexError):
        return []
    return [*(container.get("command") or []), *(container.get("args") or [])]


def convert_trainjob(doc: dict[str, Any] | str, source: str) -> list[Conversion]:
    def body(b: _Builder, spec: dict[str, Any]) -> None:
        trainer = spec.get("trainer") or {}
        if not isinstance(trainer, dict):
            raise UnsupportedInput("spec.trainer: not a mapping")
        runtime = (spec.get("runtimeRef") or {}).get("name")
        image = trainer.get("image") or RUNTIME_IMAGES.get(str(runtime))
        if not image:
            raise UnsupportedInput(
                f"spec.trainer.image: missing, and runtime {runtime} is not one whose image "
                "is known"
            )
        if not trainer.get("image"):
            b.action(
                "spec.runtimeRef",
                f"the image came from runtime {runtime}: {image}",
                "check it is the image the runtime runs in your cluster",
            )
        elif runtime:
            b.changed(
                "spec.runtimeRef",
                f"runtime {runtime} is not read: its launcher, policies and pod template",
                "carry what it sets (volumes, nodeSelector, env) by hand",
            )
        _trainer(b, trainer, image)
        _trainjob_rest(b, spec)

    return _guarded(doc, source, "TrainJob", body)


def _trainer(b: _Builder, trainer: dict[str, Any], image: str) -> None:
    b.spec["image"] = image
    for key in ("command", "args", "env"):
        if trainer.get(key):
            b.spec[key] = copy.deepcopy(trainer[key])
    nodes = trainer.get("numNodes", 1)
    if not isinstance(nodes, int) or nodes < 1:
        raise UnsupportedInput(f"spec.trainer.numNodes: not a positive whole number: {nodes!r}")
    b.spec["workers"] = nodes
    b.resources(trainer.get("resourcesPerNode") or {}, "spec.trainer.resourcesPerNode")
    if "numProcPerNode" in trainer:
        b.changed(
            "spec.trainer.numProcPerNode",
            "Stratus does not set PET_NPROC_PER_NODE",
            f"pass --nproc-per-node={trainer['numProcPerNode']} to torchrun in args",
        )
    b.unknown(
        "spec.trainer",
        trainer,
        {"image", "command", "args", "env", "numNodes", "resourcesPerNode", "numProcPerNode"},
    )


def _trainjob_rest(b: _Builder, spec: dict[str, Any]) -> None:
    initializer = spec.get("initializer")
    if initializer:
        b.dropped(
            "spec.initializer",
            "Stratus runs no dataset or model initializer",
            "download in the program, or stage the data on a volume",
        )
    for key in ("labels", "annotations"):
        if isinstance(spec.get(key), dict):
            b.pod_metadata[key] = dict(spec[key])
    if isinstance(spec.get("suspend"), bool):
        b.spec["suspend"] = spec["suspend"]
    if "podSpecOverrides" in spec:
        b.dropped(
            "spec.podSpecOverrides",
            "not merged into podTemplate",
            "carry its settings into spec.podTemplate by hand",
        )
    if "managedBy" in spec:
        b.dropped("spec.managedBy", "Stratus manages its TrainingJobs itself")
    b.unknown(
        "spec",
        spec,
        {
            "runtimeRef",
            "trainer",
            "initializer",
            "labels",
            "annotations",
            "suspend",
            "podSpecOverrides",
            "managedBy",
        },
    )


def convert_job(doc: dict[str, Any] | str, source: str) -> list[Conversion]:
    def body(b: _Builder, spec: dict[str, Any]) -> None:
        template = spec.get("template")
        containers = (
            ((template or {}).get("spec") or {}).get("containers")
            if isinstance(template, dict)
            else None
        )
        if not isinstance(containers, list) or not any(
            isinstance(c, dict) and _gpus(c) for c in containers
        ):
            raise UnsupportedInput(
                f"spec.template: no container requests {GPU}; not a GPU job, leave it a Job"
            )
        b.pod(template, "spec.template", None)
        parallelism = spec.get("parallelism", 1)
        completions = spec.get("completions")
        if spec.get("completionMode") == "Indexed" and isinstance(parallelism, int):
            b.spec["workers"] = max(1, parallelism)
        elif isinstance(parallelism, int) and parallelism > 1:
            b.spec["workers"] = parallelism
            b.changed(
                "spec.parallelism",
                "parallel pods became distributed workers, each with its rank",
            )
        if completions is not None and completions != parallelism:
            b.changed("spec.completions", "a TrainingJob runs its workers once to completion")
        for key in ("activeDeadlineSeconds", "ttlSecondsAfterFinished", "suspend", "backoffLimit"):
            if key in spec:
                b.run_policy({key: spec[key]}, "spec")
        for key in (
            "podFailurePolicy",
            "backoffLimitPerIndex",
            "maxFailedIndexes",
            "successPolicy",
        ):
            if key in spec:
                b.changed(
                    f"spec.{key}",
                    "Stratus decides retries itself (spec.retry)",
                    "list retryable exit codes in spec.retry.retryableExitCodes",
                )
        if "selector" in spec or "manualSelector" in spec:
            b.dropped("spec.selector", "Stratus labels and selects its pods itself")
        b.unknown(
            "spec",
            spec,
            {
                "template",
                "parallelism",
                "completions",
                "completionMode",
                "activeDeadlineSeconds",
                "ttlSecondsAfterFinished",
                "suspend",
                "backoffLimit",
                "podFailurePolicy",
                "backoffLimitPerIndex",
                "maxFailedIndexes",
                "successPolicy",
                "selector",
                "manualSelector",
                "podReplacementPolicy",
                "managedBy",
            },
        )
        for key in ("podReplacementPolicy", "managedBy"):
            if key in spec:
                b.dropped(f"spec.{key}", "Stratus manages each attempt's Job itself")

    return _guarded(doc, source, "Job", body)
