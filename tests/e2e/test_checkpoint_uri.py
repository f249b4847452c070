"""A TrainingJob whose checkpoints go to object storage, on the local control plane with kwok
playing the workload: the pods get the store and the credentials as Secret references, and only a
checkpoint in the bucket is recorded and resumed from."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.builders import TrainingJobBuilder
from tests.e2e.test_training import Env, env, env_of
from tests.support import wait_for

pytestmark = pytest.mark.usefixtures("operator")
__all__ = ["env"]
URI = "s3://ml-checkpoints/run-7"
ENDPOINT = "http://seaweedfs.storage:8333"
SECRET = "s3-credentials"


def next_job(env: Env, name: str) -> Any:
    return next((j for j in env.jobs(name) if j.metadata.name == f"{name}-2"), None)


def s3_job(name: str, reported: str) -> TrainingJobBuilder:
    return (
        TrainingJobBuilder(name)
        .spot()
        .runs_for("10m")
        .checkpoint(uri=URI, endpoint=ENDPOINT, credentialsSecret=SECRET)
        .reports(reported, 100)
    )


def test_an_uploaded_checkpoint_is_recorded_and_the_next_attempt_resumes_from_its_uri(
    env: Env,
) -> None:
    env.create(s3_job("s3ckpt", f"{URI}/step-100"))
    (pod,) = env.running_pods("s3ckpt", 1)
    (train,) = pod.spec.containers
    by_name = {e.name: e for e in train.env}
    assert by_name["STRATUS_CHECKPOINT_URI"].value == URI
    assert by_name["AWS_ENDPOINT_URL"].value == ENDPOINT
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"):
        assert by_name[key].value is None
        ref = by_name[key].value_from.secret_key_ref
        assert (ref.name, ref.key) == (SECRET, key)
    assert by_name["AWS_REGION"].value_from.secret_key_ref.optional is True
    (scratch,) = [v for v in pod.spec.volumes if v.name == "stratus-checkpoints"]
    assert scratch.empty_dir is not None
    env.preempt(pod.spec.node_name)
    obj = env.wait(
        "s3ckpt", "attempt 2", lambda s: s.get("attempt") == 2 and bool(s.get("activeJob"))
    )
    assert obj["status"]["lastCheckpoint"]["path"] == f"{URI}/step-100"
    assert obj["status"]["lastCheckpoint"]["step"] == 100
    # No credential in the status, whatever the pods were given.
    assert "secretKeyRef" not in json.dumps(obj["status"])
    job = wait_for("Job s3ckpt-2", lambda: next_job(env, "s3ckpt"))
    assert env_of(job)["STRATUS_RESUME_FROM"] == f"{URI}/step-100"


def test_a_checkpoint_reported_only_locally_is_not_resumed_from(env: Env) -> None:
    env.create(s3_job("s3local", "/checkpoints/step-100"))
    (pod,) = env.running_pods("s3local", 1)
    env.preempt(pod.spec.node_name)
    obj = env.wait(
        "s3local", "attempt 2", lambda s: s.get("attempt") == 2 and bool(s.get("activeJob"))
    )
    assert "lastCheckpoint" not in obj["status"]
    job = wait_for("Job s3local-2", lambda: next_job(env, "s3local"))
    assert "STRATUS_RESUME_FROM" not in env_of(job)
    assert "Resumed" not in {e.reason for e in env.events("s3local")}
