"""Property test: on generated specs, valid and invalid, the API server's verdict (CRD schema
and CEL) and the models' verdict agree, so the two cannot drift apart."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from stratus.api import resources
from stratus.api.common import API_VERSION, GROUP, VERSION
from tests.conftest import Cluster

pytestmark = pytest.mark.usefixtures("crds")
SETTINGS = settings(
    max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)

quantities = st.one_of(
    st.integers(-3, 10**6),
    st.sampled_from(["500m", "16Gi", "1.5", "1e3", "lots", "-1Gi", "", "8", "0.5Ti"]),
)
label_values = st.sampled_from(["nlp", "NLP team", "a" * 64, "-x", "ok.team_1", "Z"])
durations = st.sampled_from(["30s", "10m", "1h30m", "500ms", "5 minutes", "10", "1.5h", ""])


def optional(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional=fields)


training_specs = st.fixed_dictionaries(
    {"image": st.sampled_from(["train:1", ""])},
    optional={
        "workers": st.one_of(st.integers(-1, 1030), st.just("2")),
        "resources": optional(
            gpu=st.integers(-1, 66),
            gpuType=st.sampled_from(["NVIDIA-H100-80GB-HBM3", "", "bad type"]),
            cpu=quantities,
            memory=quantities,
        ),
        "spot": optional(
            enabled=st.booleans(),
            maxPreemptions=st.integers(-1, 1001),
            fallbackToOnDemandAfter=st.integers(-1, 1001),
        ),
        "checkpoint": optional(
            persistentVolumeClaim=st.sampled_from(["ckpt", "Bad_Name"]),
            uri=st.sampled_from(["s3://bkt/p", "s3://b/p", "gs://bkt", "ftp://x", "s3:/nope"]),
            endpoint=st.sampled_from(["http://s3.local:8333", "https://u:p@s3", "s3.local"]),
            credentialsSecret=st.sampled_from(["s3-creds", "S3_Creds"]),
            mountPath=st.sampled_from(["/checkpoints", "relative"]),
        ),
        "retry": optional(
            maxRestarts=st.integers(-1, 1001),
            retryableExitCodes=st.lists(st.integers(-1, 256), max_size=3),
            maxRetryableRestarts=st.integers(-1, 1001),
            backoffSeconds=st.integers(-1, 3601),
            maxBackoffSeconds=st.integers(-1, 86401),
        ),
        "team": label_values,
        "terminationGracePeriodSeconds": st.integers(-1, 3700),
        "suspend": st.one_of(st.booleans(), st.just("yes")),
    },
)

steps = st.lists(
    st.fixed_dictionaries(
        {"weight": st.integers(-1, 101)}, optional={"pause": optional(duration=durations)}
    ),
    max_size=4,
)
metrics = st.lists(
    st.fixed_dictionaries(
        {"name": st.sampled_from(["errors", "latency", "Bad Name"]), "query": st.just("up")},
        optional={"min": st.integers(-2, 2), "max": st.floats(-2, 2, allow_nan=False)},
    ),
    max_size=3,
)
inference_specs = st.fixed_dictionaries(
    {
        "image": st.just("serve:1"),
        "model": st.fixed_dictionaries(
            {
                "uri": st.sampled_from(
                    [
                        "s3://m/model",
                        "s3://models/m.bin",
                        "gs://models/bert/",
                        "s3://models/m?versionId=1",
                        "https://x/m",
                        "pvc://claim/m",
                        "ftp://m",
                        "pvc://claim",
                        "pvc://claim/../etc/passwd",
                        "pvc://claim/a..b/m",
                        "pvc://Bad_Claim/m",
                    ]
                )
            },
            optional={
                "sha256": st.sampled_from(["a" * 64, "abc", "A" * 64]),
                "caConfigMap": st.sampled_from(["model-ca", "Bad_Name"]),
                "endpoint": st.sampled_from(["https://storage.googleapis.com", "http://h/p"]),
                "credentialsSecret": st.sampled_from(["hmac-keys", "-bad"]),
                "sizeLimit": st.sampled_from(
                    ["20Gi", "0", "1.5Gi", "999999Ti", "9999999Ti", "100"]
                ),
            },
        ),
    },
    optional={
        "port": st.integers(0, 65536),
        "replicas": optional(min=st.integers(-1, 5), max=st.integers(-1, 5)),
        "autoscaling": st.fixed_dictionaries(
            {"target": quantities},
            optional={
                "metric": st.sampled_from(["cpu", "memory", "prometheus", "gpu"]),
                "query": st.sampled_from(["sum(rate(x[1m]))", ""]),
            },
        ),
        "rollout": optional(
            strategy=st.sampled_from(["Canary", "Recreate", "BlueGreen"]),
            steps=steps,
            analysis=optional(
                interval=durations, failureLimit=st.integers(-1, 101), metrics=metrics
            ),
        ),
    },
)


@pytest.fixture(scope="module")
def shared_namespace(cluster: Cluster) -> Iterator[str]:
    core = client.CoreV1Api(cluster.api)
    name = f"prop-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    yield name
    core.delete_namespace(name)


def verdicts(
    cluster: Cluster, namespace: str, kind: str, spec: dict[str, Any]
) -> tuple[str | None, str | None]:
    rtype = resources.resource_type(kind)
    obj = {"apiVersion": API_VERSION, "kind": kind, "metadata": {"name": "gen"}, "spec": spec}
    model_error = server_error = None
    try:
        resources.validate(obj)
    except resources.InvalidResourceError as exc:
        model_error = str(exc)
    try:
        client.CustomObjectsApi(cluster.api).create_namespaced_custom_object(
            GROUP, VERSION, namespace, rtype.plural, obj, dry_run="All", field_validation="Strict"
        )
    except ApiException as exc:
        if exc.status not in (400, 422):
            raise
        server_error = str(exc.body)
    return model_error, server_error


def assert_agree(model_error: str | None, server_error: str | None) -> None:
    event("valid" if model_error is None else "invalid")
    assert (model_error is None) == (server_error is None), (
        f"models: {model_error or 'accepted'}\nAPI server: {server_error or 'accepted'}"
    )


@SETTINGS
@given(spec=training_specs)
def test_training_job_verdicts_agree(
    cluster: Cluster, shared_namespace: str, spec: dict[str, Any]
) -> None:
    assert_agree(*verdicts(cluster, shared_namespace, "TrainingJob", spec))


@SETTINGS
@given(spec=inference_specs)
def test_inference_service_verdicts_agree(
    cluster: Cluster, shared_namespace: str, spec: dict[str, Any]
) -> None:
    assert_agree(*verdicts(cluster, shared_namespace, "InferenceService", spec))
