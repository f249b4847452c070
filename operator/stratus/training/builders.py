"""Pure builders: a TrainingJob's spec and an attempt number in, the Job (and, for distributed
runs, the headless Service) that runs the attempt out."""

from __future__ import annotations

from dataclasses import dataclass

from stratus import podspec
from stratus.api.trainingjob import TrainingJobSpec
from stratus.config import CapacityConvention
from stratus.cost.prices import ON_DEMAND, SPOT
from stratus.podspec import MANAGED_BY_LABEL, MANAGER, Manifest, Owner
from stratus.training.labels import (
    ATTEMPT_LABEL,
    CAPACITY_LABEL,
    KUEUE_QUEUE_LABEL,
    TRAININGJOB_LABEL,
)
from stratus.training.views import resumable

CONTAINER = "train"
CHECKPOINT_VOLUME = "stratus-checkpoints"


@dataclass(frozen=True)
class AttemptPlan:
    """What differs between attempts."""

    number: int
    resume_from: str | None
    on_spot: bool
    # Seconds left of the TrainingJob's activeDeadlineSeconds, if it has one.
    deadline_seconds: int | None = None
    # Queued on spot: Kueue's ResourceFlavors choose spot or on-demand (the Job tolerates spot
    # nodes and requires neither), so an exhausted spot quota falls back to on-demand.
    flexible: bool = False
    # Left to Kueue (spec.queueName, and Kueue in the cluster): created suspended.
    queued: bool = False


def job_name(owner_name: str, attempt: int) -> str:
    return f"{owner_name}-{attempt}"


def service_name(owner_name: str) -> str:
    return owner_name


def common_labels(owner: Owner, spec: TrainingJobSpec) -> dict[str, str]:
    return {TRAININGJOB_LABEL: owner.name, MANAGED_BY_LABEL: MANAGER, **podspec.cost_labels(spec)}


def _env(
    owner: Owner, spec: TrainingJobSpec, attempt: AttemptPlan, master_port: int
) -> list[Manifest]:
    env: list[Manifest] = []
    mount = spec.checkpoint.mount_path if spec.checkpoint else "/checkpoints"
    env += [
        {"name": "STRATUS_CHECKPOINT_DIR", "value": mount},
        {"name": "STRATUS_ATTEMPT", "value": str(attempt.number)},
        # The SDK finishes the final upload within it, and exits before the kubelet's SIGKILL.
        {"name": "STRATUS_GRACE_SECONDS", "value": str(spec.termination_grace_period_seconds)},
    ]
    uri = spec.checkpoint_uri
    if spec.checkpoint and uri:
        env.append({"name": "STRATUS_CHECKPOINT_URI", "value": uri})
        env += podspec.object_store_env(
            spec.checkpoint.endpoint, spec.checkpoint.credentials_secret
        )
    if attempt.resume_from and resumable(attempt.resume_from, uri):
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


def _placement(
    spec: TrainingJobSpec, attempt: AttemptPlan, capacity: CapacityConvention
) -> tuple[Manifest, list[Manifest]]:
    """Node affinity and tolerations: GPU product, spot or on-demand capacity."""
    terms, tolerations = podspec.gpu_placement(spec.resources)
    if attempt.on_spot:
        if not attempt.flexible:
            terms.append({"key": capacity.label, "operator": "In", "values": [capacity.spot_value]})
        if capacity.taint_key:
            toleration = {
                "key": capacity.taint_key,
                "operator": "Equal",
                "value": capacity.taint_value or "",
                "effect": "NoSchedule",
            }
            tolerations.append(toleration)
    else:
        # Not on spot (never asked for, or fallen back): kept off spot nodes by rule, not by the
        # chance that they are tainted (EKS's are not). NotIn also matches nodes without the label.
        terms.append({"key": capacity.label, "operator": "NotIn", "values": [capacity.spot_value]})
    return podspec.affinity(terms), tolerations


def _checkpoint_volume(spec: TrainingJobSpec) -> tuple[Manifest, Manifest]:
    checkpoint = spec.checkpoint
    if checkpoint and checkpoint.persistent_volume_claim:
        source: Manifest = {
            "persistentVolumeClaim": {"claimName": checkpoint.persistent_volume_claim}
        }
    else:
        # Object storage (the SDK writes here, then uploads) or nothing: scratch per pod.
        source = {"emptyDir": {}}
    mount = {
        "name": CHECKPOINT_VOLUME,
        "mountPath": checkpoint.mount_path if checkpoint else "/checkpoints",
    }
    return {"name": CHECKPOINT_VOLUME, **source}, mount


def build_job(
    owner: Owner,
    spec: TrainingJobSpec,
    attempt: AttemptPlan,
    capacity: CapacityConvention,
    master_port: int = 29500,
) -> Manifest:
    labels = {**common_labels(owner, spec), ATTEMPT_LABEL: str(attempt.number)}
    if not attempt.flexible:
        # A flexible attempt's capacity is the flavor Kueue admits it on (views.with_capacity).
        labels[CAPACITY_LABEL] = SPOT if attempt.on_spot else ON_DEMAND
    job_labels = dict(labels)
    if spec.queue_name:
        job_labels[KUEUE_QUEUE_LABEL] = spec.queue_name
    affinity, tolerations = _placement(spec, attempt, capacity)
    volume, mount = _checkpoint_volume(spec)
    container = podspec.container(
        CONTAINER, spec, _env(owner, spec, attempt, master_port), [mount], spec.resources
    )
    container["terminationMessagePolicy"] = "File"
    pod_spec: Manifest = {
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": spec.termination_grace_period_seconds,
        "containers": [container],
        "volumes": podspec.volumes(spec, [volume]),
    }
    if affinity:
        pod_spec["affinity"] = affinity
    if tolerations:
        pod_spec["tolerations"] = tolerations
    if spec.priority_class_name:
        pod_spec["priorityClassName"] = spec.priority_class_name
    if spec.workers > 1:
        pod_spec["subdomain"] = service_name(owner.name)

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
        "template": podspec.template(spec, labels, pod_spec),
    }
    if attempt.deadline_seconds is not None:
        job_spec["activeDeadlineSeconds"] = max(1, attempt.deadline_seconds)
    if attempt.queued:
        # Kueue admits it by unsuspending it (with its flavor's node labels): created suspended,
        # as Kueue's own Job webhook would make it, so no webhook needs to be registered.
        job_spec["suspend"] = True
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
