"""Checkpoints and models in object storage, as the operator builds and records them: the
environment an S3 client reads (credentials only as Secret references), where an attempt resumes
from, what status.lastCheckpoint holds, and that the workload policy lets all of it through."""

from __future__ import annotations

import json
from typing import Any

import pytest

from stratus import policy
from stratus.api.inferenceservice import InferenceServiceSpec
from stratus.api.trainingjob import TrainingJobSpec, TrainingJobStatus
from stratus.config import SPOT_PRESETS
from stratus.podspec import Owner
from stratus.serving import builders as serving
from stratus.training import builders as training
from stratus.training.views import resumable
from tests.unit.test_training_planner import job, pod, run
from tests.unit.test_workload_pods import assert_restricted

Obj = dict[str, Any]
TJ_OWNER = Owner("TrainingJob", "gpt", "ml", "uid-9")
INFS_OWNER = Owner("InferenceService", "web", "ml", "uid-7")
URI = "s3://ml-checkpoints/gpt"
ENDPOINT = "http://seaweedfs.storage:8333"
S3_CHECKPOINT = {"uri": URI, "endpoint": ENDPOINT, "credentialsSecret": "s3-credentials"}
SECRET_REFS = {
    "AWS_ACCESS_KEY_ID": {"secretKeyRef": {"name": "s3-credentials", "key": "AWS_ACCESS_KEY_ID"}},
    "AWS_SECRET_ACCESS_KEY": {
        "secretKeyRef": {"name": "s3-credentials", "key": "AWS_SECRET_ACCESS_KEY"}
    },
    "AWS_REGION": {
        "secretKeyRef": {"name": "s3-credentials", "key": "AWS_REGION", "optional": True}
    },
}


def attempt_pod(checkpoint: Obj | None, resume_from: str | None = None, **fields: Any) -> Obj:
    spec = TrainingJobSpec.model_validate(
        {"image": "train:1", **({"checkpoint": checkpoint} if checkpoint else {}), **fields}
    )
    plan = training.AttemptPlan(2, resume_from, on_spot=False)
    built: Obj = training.build_job(TJ_OWNER, spec, plan, SPOT_PRESETS["karpenter"])
    pod_spec: Obj = built["spec"]["template"]["spec"]
    return pod_spec


def env_of(container: Obj) -> dict[str, Obj]:
    return {e["name"]: e for e in container.get("env", [])}


def test_an_s3_checkpoint_gets_its_uri_endpoint_and_secret_references() -> None:
    pod_spec = attempt_pod(S3_CHECKPOINT | {"mountPath": "/scratch"})
    (train,) = pod_spec["containers"]
    env = env_of(train)
    assert env["STRATUS_CHECKPOINT_URI"]["value"] == URI
    assert env["STRATUS_CHECKPOINT_DIR"]["value"] == "/scratch"
    assert env["AWS_ENDPOINT_URL"]["value"] == ENDPOINT
    for key, source in SECRET_REFS.items():
        assert env[key] == {"name": key, "valueFrom": source}
    # The SDK's local writes go to a scratch volume of the pod.
    assert {"name": "stratus-checkpoints", "emptyDir": {}} in pod_spec["volumes"]
    assert {"name": "stratus-checkpoints", "mountPath": "/scratch"} in train["volumeMounts"]
    assert_restricted(pod_spec)


def test_without_an_endpoint_the_secret_may_name_its_store() -> None:
    env = env_of(attempt_pod({"uri": URI, "credentialsSecret": "s3-credentials"})["containers"][0])
    assert env["AWS_ENDPOINT_URL"] == {
        "name": "AWS_ENDPOINT_URL",
        "valueFrom": {
            "secretKeyRef": {"name": "s3-credentials", "key": "AWS_ENDPOINT_URL", "optional": True}
        },
    }


def test_without_a_secret_or_endpoint_the_pods_own_identity_and_aws_are_used() -> None:
    env = env_of(attempt_pod({"uri": URI})["containers"][0])
    assert env["STRATUS_CHECKPOINT_URI"]["value"] == URI
    assert not {"AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} & set(env)


def test_a_tenants_own_region_is_kept_before_the_optional_secret_key() -> None:
    env = attempt_pod(S3_CHECKPOINT, env=[{"name": "AWS_REGION", "value": "eu-west-1"}])[
        "containers"
    ][0]["env"]
    regions = [e for e in env if e["name"] == "AWS_REGION"]
    # The kubelet skips an optional key the Secret lacks, so the tenant's value stays.
    assert regions == [{"name": "AWS_REGION", "value": "eu-west-1"}, regions[1]]
    assert regions[1]["valueFrom"]["secretKeyRef"]["optional"] is True


@pytest.mark.parametrize(
    ("resume_from", "passed"),
    [
        (f"{URI}/step-100", True),
        (f"{URI}/attempt-1/step-100", True),
        # A local path died with the previous pod's scratch volume.
        ("/checkpoints/step-100", False),
        # Another prefix that only begins the same way.
        ("s3://ml-checkpoints/gpt-2/step-100", False),
        ("s3://other-bucket/gpt/step-100", False),
    ],
)
def test_an_s3_attempt_resumes_only_from_under_its_prefix(resume_from: str, passed: bool) -> None:
    env = env_of(attempt_pod(S3_CHECKPOINT, resume_from)["containers"][0])
    assert ("STRATUS_RESUME_FROM" in env) is passed
    if passed:
        assert env["STRATUS_RESUME_FROM"]["value"] == resume_from


def test_a_claim_attempt_resumes_from_a_path_never_a_uri() -> None:
    claim = {"persistentVolumeClaim": "ckpt"}
    env = env_of(attempt_pod(claim, "/checkpoints/step-9")["containers"][0])
    assert env["STRATUS_RESUME_FROM"]["value"] == "/checkpoints/step-9"
    assert "STRATUS_CHECKPOINT_URI" not in env
    assert "STRATUS_RESUME_FROM" not in env_of(attempt_pod(claim, f"{URI}/step-9")["containers"][0])


def test_resumable() -> None:
    assert resumable(f"{URI}/step-1", URI)
    assert resumable(f"{URI}/step-1", f"{URI}/")
    assert not resumable(URI, URI)
    assert not resumable("/checkpoints/step-1", URI)
    assert resumable("/checkpoints/step-1", None)
    assert not resumable(f"{URI}/step-1", None)


def test_the_operator_records_the_uploaded_checkpoint_and_the_next_attempt_resumes_from_it() -> (
    None
):
    spec = TrainingJobSpec.model_validate(
        {"image": "train:1", "spot": {"enabled": True}, "checkpoint": S3_CHECKPOINT}
    )
    status = {**run(spec).status, "phase": "Running"}
    digest = "ab" * 32
    uploaded = json.dumps({"path": f"{URI}/step-120", "step": 120, "sha256": digest})
    # A newer step still local (its upload did not finish) is not a checkpoint to resume from.
    local = json.dumps({"path": "/checkpoints/step-130", "step": 130})
    preempted = job(1, failed="Pod ns/p-1 has condition DisruptionTarget matching FailJob rule")
    pods = (
        pod(1, "a", phase="Failed", deleted=True, disrupted=True, message=uploaded),
        pod(1, "b", phase="Failed", deleted=True, disrupted=True, message=local),
    )
    plan = run(spec, status, (preempted,), pods)
    record = plan.status["lastCheckpoint"]
    assert (record["path"], record["step"], record["sha256"]) == (f"{URI}/step-120", 120, digest)
    TrainingJobStatus.model_validate(plan.status)
    (created,) = plan.create
    env = env_of(created["spec"]["template"]["spec"]["containers"][0])
    assert env["STRATUS_RESUME_FROM"]["value"] == f"{URI}/step-120"
    resumed = next(e for e in plan.events if e.reason == "Resumed")
    assert f"{URI}/step-120" in resumed.message
    # Credentials appear nowhere as values: not in the Job, not in the status.
    text = json.dumps([created, plan.status])
    assert "secretKeyRef" in text
    assert all(
        "value" not in e
        for e in created["spec"]["template"]["spec"]["containers"][0]["env"]
        if e["name"].startswith("AWS_") and e["name"] != "AWS_ENDPOINT_URL"
    )


def test_a_path_recorded_before_the_location_moved_to_s3_is_not_resumed_from() -> None:
    spec = TrainingJobSpec.model_validate({"image": "train:1", "checkpoint": S3_CHECKPOINT})
    status = {
        **run(spec).status,
        "attempt": 2,
        "phase": "Restarting",
        "lastCheckpoint": {"path": "/checkpoints/step-9", "step": 9},
    }
    plan = run(spec, status)
    (created,) = plan.create
    assert "STRATUS_RESUME_FROM" not in env_of(created["spec"]["template"]["spec"]["containers"][0])
    assert "Resumed" not in [e.reason for e in plan.events]


def test_the_workload_policy_judges_the_tenants_fields_not_the_operators_secret_refs() -> None:
    spec = TrainingJobSpec.model_validate({"image": "train:1", "checkpoint": S3_CHECKPOINT})
    assert policy.check(spec, policy.WorkloadPolicy("restricted")) == ()
    model = {"uri": "s3://models/web/v3/", "endpoint": ENDPOINT, "credentialsSecret": "s3-creds"}
    serving_spec = InferenceServiceSpec.model_validate({"image": "serve:1", "model": model})
    assert policy.check(serving_spec, policy.WorkloadPolicy("restricted")) == ()


def staging_pod(model: Obj) -> Obj:
    spec = InferenceServiceSpec.model_validate({"image": "serve:1", "model": model})
    deployment = serving.build_deployment(INFS_OWNER, spec, "abc", 1, "stage:1")
    pod_spec: Obj = deployment["spec"]["template"]["spec"]
    return pod_spec


def test_the_staging_init_container_alone_gets_the_store_and_its_credentials() -> None:
    digest = "cd" * 32
    pod_spec = staging_pod(
        {
            "uri": "s3://models/web/v3/",
            "sha256": digest,
            "endpoint": ENDPOINT + "/",
            "credentialsSecret": "s3-credentials",
        }
    )
    (init,) = pod_spec["initContainers"]
    env = env_of(init)
    assert env["AWS_ENDPOINT_URL"]["value"] == ENDPOINT
    for key, source in SECRET_REFS.items():
        assert env[key] == {"name": key, "valueFrom": source}
    command = init["command"]
    assert command[command.index("--uri") + 1] == "s3://models/web/v3/"
    assert command[command.index("--sha256") + 1] == digest
    (server,) = pod_spec["containers"]
    assert not [e for e in server["env"] if e["name"].startswith("AWS_")]
    assert_restricted(pod_spec)


def test_a_gs_model_without_secret_or_endpoint_adds_no_environment() -> None:
    (init,) = staging_pod({"uri": "gs://models/web/model.bin"})["initContainers"]
    assert "env" not in init
