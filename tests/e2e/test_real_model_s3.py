"""A model staged from object storage on the real node: SeaweedFS on the node's bridge address, the
operator image's init container (with its boto3) downloading a directory model with the keys from
a Secret of the namespace, and real requests answered from what it staged. A directory with one
corrupt file stops at staging, its one-line reason in ModelStaged."""

from __future__ import annotations

import hashlib
import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from stratus.api.common import GROUP, VERSION
from stratus.devcluster import objectstore
from stratus.storage import s3
from tests.conftest import Cluster
from tests.e2e.test_real_canary import BODY, IMAGE, MODEL, PORT, PREDICTIONS, node_ip
from tests.e2e.test_serving import Serving, serving
from tests.support import needs_real_node, wait_for

pytestmark = pytest.mark.usefixtures("operator")
__all__ = ["serving"]
SECRET = "model-s3"
FILES = {"model.json": json.dumps(MODEL).encode(), "README.txt": b"iris, linear\n"}


def manifest(files: dict[str, bytes]) -> bytes:
    return json.dumps(
        {
            "files": {
                name: {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
                for name, data in files.items()
            }
        }
    ).encode()


@pytest.fixture
def store(cluster: Cluster, real_node: str, tmp_path: Path) -> Iterator[objectstore.Credentials]:
    """The store on the node's bridge address, with a good and a corrupt directory model."""
    if cluster.state_dir is None:
        needs_real_node("the object store listens on the local real node's bridge address")
    with objectstore.standalone(tmp_path, node_ip(cluster, real_node)) as creds:
        bucket = objectstore.client(creds)
        corrupt = {**FILES, "model.json": FILES["model.json"].replace(b"small", b"SMALL")}
        for prefix, files in (("models/iris/v1/", FILES), ("models/iris/corrupt/", corrupt)):
            for name, data in files.items():
                bucket.put_object(Bucket=creds.bucket, Key=prefix + name, Body=data)
            bucket.put_object(Bucket=creds.bucket, Key=prefix + s3.MANIFEST, Body=manifest(FILES))
        yield creds


def inference_service(name: str, creds: objectstore.Credentials, prefix: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "InferenceService",
        "metadata": {"name": name},
        "spec": {
            "image": IMAGE,
            "env": [{"name": "REVISION", "value": "v1"}, {"name": "FAIL_RATIO", "value": "0"}],
            "model": {
                "uri": f"s3://{creds.bucket}/{prefix}",
                "endpoint": creds.endpoint,
                "credentialsSecret": SECRET,
            },
            "port": PORT,
            "readinessPath": "/healthz",
            "resources": {"gpu": 0, "cpu": "100m", "memory": "128Mi"},
            "replicas": {"min": 1, "max": 1},
            "podTemplate": {
                "spec": {
                    "containers": [{"name": "server", "imagePullPolicy": "Never"}],
                    "initContainers": [{"name": "stage-model", "imagePullPolicy": "Never"}],
                }
            },
        },
    }


def predict(cluster_ip: str) -> list[str] | None:
    conn = http.client.HTTPConnection(cluster_ip, 80, timeout=5)
    try:
        conn.request("POST", "/predict", body=BODY, headers={"Connection": "close"})
        answer = json.loads(conn.getresponse().read())
        return list(answer["predictions"]) if isinstance(answer, dict) else None
    except (OSError, http.client.HTTPException, ValueError, KeyError, TypeError):
        return None
    finally:
        conn.close()


def test_a_directory_model_is_staged_from_s3_and_served(
    cluster: Cluster, serving: Serving, store: objectstore.Credentials
) -> None:
    core = client.CoreV1Api(cluster.api)
    keys = {k: v for k, v in store.env().items() if k != "AWS_ENDPOINT_URL"}
    core.create_namespaced_secret(serving.ns, {"metadata": {"name": SECRET}, "stringData": keys})
    serving.create(inference_service("iris", store, "models/iris/v1/"))
    serving.wait("iris", "Healthy", lambda s: s.get("phase") == "Healthy", timeout=180)
    (pod,) = core.list_namespaced_pod(
        serving.ns, label_selector="stratus.dev/inferenceservice=iris"
    ).items
    (init,) = pod.spec.init_containers
    refs = {e.name: e.value_from.secret_key_ref for e in init.env if e.value_from}
    assert {k: (r.name, r.key) for k, r in refs.items()} == {
        k: (SECRET, k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION")
    }
    assert not [e for e in pod.spec.containers[0].env if e.name.startswith("AWS_")]
    log = core.read_namespaced_pod_log(pod.metadata.name, serving.ns, container="stage-model")
    assert log.strip() == f"staged s3://{store.bucket}/models/iris/v1/ at /models/v1"
    cluster_ip = core.read_namespaced_service("iris", serving.ns).spec.cluster_ip
    assert wait_for("predictions from the staged model", lambda: predict(cluster_ip)) == (
        PREDICTIONS
    )
    for secret in (store.access_key_id, store.secret_access_key):
        assert secret not in log


def test_a_corrupt_file_stops_staging_with_its_reason(
    cluster: Cluster, serving: Serving, store: objectstore.Credentials
) -> None:
    core = client.CoreV1Api(cluster.api)
    keys = {k: v for k, v in store.env().items() if k != "AWS_ENDPOINT_URL"}
    core.create_namespaced_secret(serving.ns, {"metadata": {"name": SECRET}, "stringData": keys})
    serving.create(inference_service("iris-bad", store, "models/iris/corrupt/"))
    status, staged = serving.wait_condition("iris-bad", "ModelStaged", "False")
    assert staged["reason"] == "StagingFailed"
    assert (
        f"model staging failed: s3://{store.bucket}/models/iris/corrupt/: model.json: sha256 "
        f"mismatch: expected {hashlib.sha256(FILES['model.json']).hexdigest()}, got "
    ) in staged["message"]
    assert store.secret_access_key not in json.dumps(status)
