"""Attempt Jobs and the headless Service, built without a cluster; and the views read back."""

from __future__ import annotations

from typing import Any

from stratus.api.trainingjob import TrainingJobSpec
from stratus.config import SPOT_PRESETS
from stratus.podspec import Owner
from stratus.training import builders
from stratus.training.views import job_view, parse_report, pod_view

OWNER = Owner("TrainingJob", "gpt", "ml", "uid-9")


def build(**fields: Any) -> dict[str, Any]:
    spec = TrainingJobSpec.model_validate({"image": "train:1", **fields})
    attempt = builders.AttemptPlan(3, "/ckpt/step-1", on_spot=spec.spot.enabled)
    return builders.build_job(OWNER, spec, attempt, SPOT_PRESETS["gke"])


def test_job_is_owned_labelled_and_named_by_attempt() -> None:
    job = build(team="nlp", costCenter="cc-1", queueName="research")
    meta = job["metadata"]
    assert meta["name"] == "gpt-3"
    assert meta["ownerReferences"][0]["uid"] == "uid-9"
    assert meta["ownerReferences"][0]["controller"] is True
    assert meta["labels"]["stratus.dev/team"] == "nlp"
    assert meta["labels"]["stratus.dev/cost-center"] == "cc-1"
    assert meta["labels"]["kueue.x-k8s.io/queue-name"] == "research"
    assert job["spec"]["template"]["metadata"]["labels"]["stratus.dev/attempt"] == "3"


def test_gpus_type_and_spot_preset_shape_the_pod() -> None:
    pod = build(
        resources={"gpu": 8, "gpuType": "NVIDIA-A100", "cpu": "500m", "memory": "1Gi"},
        spot={"enabled": True},
    )["spec"]["template"]["spec"]
    limits = pod["containers"][0]["resources"]["limits"]
    assert limits == {"nvidia.com/gpu": "8", "cpu": "500m", "memory": "1Gi"}
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ][0]["matchExpressions"]
    assert {"key": "nvidia.com/gpu.product", "operator": "In", "values": ["NVIDIA-A100"]} in terms
    assert {"key": "cloud.google.com/gke-spot", "operator": "In", "values": ["true"]} in terms
    assert {
        "key": "cloud.google.com/gke-spot",
        "operator": "Equal",
        "value": "true",
        "effect": "NoSchedule",
    } in pod["tolerations"]


def test_checkpoint_contract_in_the_environment_and_volume() -> None:
    job = build(checkpoint={"persistentVolumeClaim": "ckpt", "mountPath": "/data/ckpt"})
    pod = job["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["STRATUS_CHECKPOINT_DIR"] == "/data/ckpt"
    assert env["STRATUS_ATTEMPT"] == "3"
    assert env["STRATUS_GRACE_SECONDS"] == str(pod["terminationGracePeriodSeconds"])
    assert env["STRATUS_RESUME_FROM"] == "/ckpt/step-1"
    assert {"name": "stratus-checkpoints", "persistentVolumeClaim": {"claimName": "ckpt"}} in (
        pod["volumes"]
    )
    assert pod["terminationGracePeriodSeconds"] == 120
    rules = job["spec"]["podFailurePolicy"]["rules"]
    assert rules[0]["onPodConditions"] == [{"type": "DisruptionTarget"}]
    assert job["spec"]["backoffLimit"] == 0


def test_distributed_runs_get_rank_world_size_and_a_headless_service() -> None:
    spec = TrainingJobSpec.model_validate({"image": "t", "workers": 4})
    job = builders.build_job(
        OWNER, spec, builders.AttemptPlan(1, None, False), SPOT_PRESETS["karpenter"]
    )
    pod = job["spec"]["template"]["spec"]
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["PET_MASTER_ADDR"]["value"] == "gpt-1-0.gpt"
    assert env["WORLD_SIZE"]["value"] == "4"
    assert "job-completion-index" in env["RANK"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert pod["subdomain"] == "gpt"
    assert (job["spec"]["completions"], job["spec"]["completionMode"]) == (4, "Indexed")
    service = builders.build_service(OWNER, spec)
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"] == {"stratus.dev/trainingjob": "gpt"}


def test_pod_template_escape_hatch_merges() -> None:
    pod = build(
        podTemplate={
            "metadata": {"labels": {"stratus.dev/attempt": "hijack", "extra": "1"}},
            "spec": {
                "tolerations": [{"key": "x", "operator": "Exists"}],
                "containers": [
                    {"name": "train", "securityContext": {"runAsUser": 1000}},
                    {"name": "sidecar", "image": "log:1"},
                ],
                "nodeSelector": {"zone": "a"},
            },
        }
    )["spec"]["template"]
    assert pod["metadata"]["labels"]["stratus.dev/attempt"] == "3"
    assert pod["metadata"]["labels"]["extra"] == "1"
    containers = {c["name"]: c for c in pod["spec"]["containers"]}
    assert containers["train"]["securityContext"]["runAsUser"] == 1000
    assert containers["train"]["image"] == "train:1"
    assert containers["sidecar"]["image"] == "log:1"
    assert {"key": "x", "operator": "Exists"} in pod["spec"]["tolerations"]
    assert pod["spec"]["nodeSelector"] == {"zone": "a"}


def test_views_read_jobs_and_pods() -> None:
    job = job_view(
        {
            "metadata": {"name": "gpt-2", "labels": {"stratus.dev/attempt": "2"}},
            "status": {
                "conditions": [
                    {
                        "type": "Failed",
                        "status": "True",
                        "reason": "PodFailurePolicy",
                        "message": "Container train for pod ml/x failed with exit code "
                        "7 matching FailJob rule at index 1",
                    }
                ]
            },
        }
    )
    assert (job.attempt, job.failed, job.exit_code, job.disrupted) == (2, True, 7, False)
    pod = pod_view(
        {
            "metadata": {"name": "p", "labels": {"stratus.dev/attempt": "2"}},
            "spec": {"nodeName": "n"},
            "status": {
                "phase": "Failed",
                "conditions": [{"type": "DisruptionTarget", "status": "True"}],
                "containerStatuses": [
                    {
                        "state": {
                            "terminated": {
                                "exitCode": 143,
                                "message": '{"path": "/c/1", "step": 1}',
                            }
                        }
                    }
                ],
            },
        },
        deleted=True,
    )
    assert pod.disrupted
    assert pod.terminal
    assert pod.checkpoint is not None
    assert pod.checkpoint.step == 1


def test_reports_must_be_json_with_a_path() -> None:
    assert parse_report("Traceback (most recent call last)") is None
    assert parse_report('{"step": 3}') is None
    assert parse_report('["/c"]') is None
    report = parse_report('{"path": "/c/9", "step": 9, "sha256": "ab"}')
    assert report is not None
    assert (report.path, report.step, report.sha256) == ("/c/9", 9, "ab")
