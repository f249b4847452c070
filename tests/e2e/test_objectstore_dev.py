"""The local cluster's object store: `up` starts SeaweedFS with the bucket `stratus`, the Secret
default/stratus-s3 and the `stratus dev env` lines; a pod on the real node that takes its
environment from that Secret reaches the store with a plain `boto3.client("s3")`."""

from __future__ import annotations

import base64
import uuid
from urllib.parse import urlparse

import pytest
from kubernetes import client

from stratus.cli import main as stratus_main
from stratus.devcluster import objectstore
from stratus.devcluster.cluster import Layout
from tests.conftest import Cluster
from tests.e2e.test_real_canary import node_ip
from tests.e2e.test_realnode_lifecycle import OPERATOR_IMAGE
from tests.support import needs_real_node, wait_for

# What a training program does with nothing but the Secret's variables.
POD_SCRIPT = """
import os, boto3
s3 = boto3.client("s3")
bucket = os.environ["STRATUS_S3_BUCKET"]
s3.put_object(Bucket=bucket, Key="from-pod/" + os.environ["KEY"], Body=b"written in a pod")
print(s3.get_object(Bucket=bucket, Key="from-pod/" + os.environ["KEY"])["Body"].read().decode())
"""


def local_store(cluster: Cluster) -> objectstore.Credentials:
    if cluster.state_dir is None:
        needs_real_node("the object store runs beside a local control plane")
    store = objectstore.credentials(Layout(cluster.state_dir.resolve()).object_store)
    assert store is not None, "the local cluster wrote no object-store credentials"
    return store


def test_up_starts_the_store_with_its_bucket_secret_and_env_lines(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    store = local_store(cluster)
    s3 = objectstore.client(store)
    s3.head_bucket(Bucket=objectstore.BUCKET)
    s3.put_object(Bucket=objectstore.BUCKET, Key="e2e/hello", Body=b"hi")
    assert s3.get_object(Bucket=objectstore.BUCKET, Key="e2e/hello")["Body"].read() == b"hi"

    secret = client.CoreV1Api(cluster.api).read_namespaced_secret(
        objectstore.SECRET_NAME, objectstore.SECRET_NAMESPACE
    )
    data = {k: base64.b64decode(v).decode() for k, v in secret.data.items()}
    assert data == objectstore.secret_manifest(store)["stringData"]
    host = urlparse(store.endpoint).hostname
    assert host == (node_ip(cluster, cluster.real_node) if cluster.real_node else "127.0.0.1")

    assert stratus_main(["dev", "env", "--state-dir", str(cluster.state_dir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert f"export STRATUS_S3_ENDPOINT={store.endpoint}" in lines
    assert f"export AWS_ACCESS_KEY_ID={store.access_key_id}" in lines


def test_a_pod_on_the_real_node_reaches_the_store_with_the_secret_alone(
    cluster: Cluster, real_node: str
) -> None:
    store = local_store(cluster)
    core = client.CoreV1Api(cluster.api)
    key = uuid.uuid4().hex[:8]
    name = f"s3-{key}"
    core.create_namespaced_pod(
        "default",
        {
            "metadata": {"name": name},
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    {
                        "name": "c",
                        "image": OPERATOR_IMAGE,
                        "imagePullPolicy": "Never",
                        "command": ["python", "-c", POD_SCRIPT],
                        "env": [{"name": "KEY", "value": key}],
                        "envFrom": [{"secretRef": {"name": objectstore.SECRET_NAME}}],
                    }
                ],
            },
        },
    )
    try:

        def finished() -> str | None:
            phase = core.read_namespaced_pod(name, "default").status.phase
            return str(phase) if phase in ("Succeeded", "Failed") else None

        phase = wait_for(f"pod {name} to finish", finished, timeout=120)
        log = core.read_namespaced_pod_log(name, "default")
        assert phase == "Succeeded", log
        assert core.read_namespaced_pod(name, "default").spec.node_name == real_node
        assert log.strip() == "written in a pod"
        got = objectstore.client(store).get_object(Bucket=store.bucket, Key=f"from-pod/{key}")
        assert got["Body"].read() == b"written in a pod"
    finally:
        core.delete_namespaced_pod(name, "default")
