"""A shared cluster's tenant, end to end: the pods Stratus generates are admitted where the
namespace enforces the `restricted` Pod Security profile and run for real on the real node; a
resource the workload policy refuses gets no child and a status that names the field; the chart
hands the admin's choice to the operator."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from stratus.api.common import GROUP, VERSION
from stratus.devcluster import kubeapi
from tests.builders import TrainingJobBuilder
from tests.conftest import Cluster
from tests.e2e.test_packaging import render
from tests.e2e.test_real_canary import MODEL
from tests.e2e.test_real_training import TRAIN_IMAGE
from tests.support import needs_real_node, wait_for

SERVER_IMAGE = "localhost/stratus/model-server:dev"
Obj = dict[str, Any]


@pytest.fixture
def restricted(cluster: Cluster) -> Iterator[str]:
    """A namespace of the test's own that enforces the restricted profile, deleted afterwards."""
    core = client.CoreV1Api(cluster.api)
    name = f"t-restricted-{uuid.uuid4().hex[:6]}"
    labels = {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest",
    }
    core.create_namespace({"metadata": {"name": name, "labels": labels}})
    wait_for(
        f"ServiceAccount {name}/default", lambda: core.list_namespaced_service_account(name).items
    )
    try:
        yield name
    finally:
        core.delete_namespace(name)


def status_of(custom: client.CustomObjectsApi, namespace: str, plural: str, name: str) -> Obj:
    obj = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
    return dict(obj.get("status") or {})


def condition(status: Obj, kind: str) -> Obj | None:
    return next((c for c in status.get("conditions") or [] if c["type"] == kind), None)


@pytest.mark.usefixtures("operator")
def test_a_training_job_and_an_inference_service_run_under_restricted_on_the_real_node(
    cluster: Cluster, real_node: str, restricted: str, tmp_path: Path
) -> None:
    if cluster.state_dir is None:
        needs_real_node("the model claim is a directory of this machine: local real node only")
    core = client.CoreV1Api(cluster.api)
    custom = client.CustomObjectsApi(cluster.api)
    models = tmp_path / "models"
    models.mkdir()
    models.chmod(0o755)
    body = json.dumps(MODEL).encode()
    (models / "model.json").write_bytes(body)
    volume = f"{restricted}-models"
    kubeapi.bind_host_directory(core, restricted, "models", volume, models)
    try:
        custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            restricted,
            "trainingjobs",
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "TrainingJob",
                "metadata": {"name": "train"},
                "spec": {
                    "image": TRAIN_IMAGE,
                    "args": ["--steps=200", "--save-every=100", "--out=/checkpoints/w.json"],
                    # The real node plays a spot L4 pool; an attempt not on spot keeps off it.
                    "resources": {"gpu": 1, "gpuType": "NVIDIA-L4", "cpu": "100m"},
                    "spot": {"enabled": True},
                    "terminationGracePeriodSeconds": 5,
                },
            },
        )
        custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            restricted,
            "inferenceservices",
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "InferenceService",
                "metadata": {"name": "iris"},
                "spec": {
                    "image": SERVER_IMAGE,
                    "model": {
                        "uri": "pvc://models/model.json",
                        "sha256": hashlib.sha256(body).hexdigest(),
                    },
                    "port": 8080,
                    "resources": {"gpu": 0, "cpu": "100m", "memory": "128Mi"},
                    "replicas": {"min": 1, "max": 1},
                    "podTemplate": {
                        "spec": {
                            "containers": [{"name": "server", "imagePullPolicy": "Never"}],
                            "initContainers": [{"name": "stage-model", "imagePullPolicy": "Never"}],
                        }
                    },
                },
            },
        )

        def trained() -> Obj | None:
            now = status_of(custom, restricted, "trainingjobs", "train")
            return now if now.get("phase") in ("Succeeded", "Failed") else None

        done = wait_for("the TrainingJob to finish under restricted", trained, timeout=180)
        assert done["phase"] == "Succeeded", done

        def serving() -> Obj | None:
            now = status_of(custom, restricted, "inferenceservices", "iris")
            return now if now.get("phase") == "Healthy" and now.get("readyReplicas") else None

        wait_for("the InferenceService to serve under restricted", serving, timeout=180)
        pods = core.list_namespaced_pod(restricted).items
        assert {p.spec.node_name for p in pods} == {real_node}
        for pod in pods:
            assert pod.spec.security_context.seccomp_profile.type == "RuntimeDefault"
            assert pod.spec.security_context.run_as_non_root is True
            for c in (pod.spec.init_containers or []) + pod.spec.containers:
                assert c.security_context.allow_privilege_escalation is False, c.name
                assert c.security_context.capabilities.drop == ["ALL"], c.name
                assert c.resources.requests, c.name
        refusals = [
            e
            for e in core.list_namespaced_event(restricted).items
            if e.reason in ("FailedCreate", "PolicyViolation")
        ]
        assert not refusals, [e.message for e in refusals]
    finally:
        for plural, name in (("trainingjobs", "train"), ("inferenceservices", "iris")):
            custom.delete_namespaced_custom_object(GROUP, VERSION, restricted, plural, name)
        core.delete_persistent_volume(volume)


@pytest.mark.usefixtures("operator")
def test_a_training_job_with_host_network_is_refused_naming_the_field_and_gets_no_job(
    cluster: Cluster, namespace: str
) -> None:
    custom = client.CustomObjectsApi(cluster.api)
    core = client.CoreV1Api(cluster.api)
    batch = client.BatchV1Api(cluster.api)
    obj = TrainingJobBuilder("host").build()
    obj["spec"]["podTemplate"]["spec"]["hostNetwork"] = True
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "trainingjobs", obj)

    def refused() -> Obj | None:
        ready = condition(status_of(custom, namespace, "trainingjobs", "host"), "Ready")
        return ready if ready and ready["reason"] == "PolicyViolation" else None

    ready = wait_for("Ready=False naming the refused field", refused, timeout=30)
    assert ready["status"] == "False"
    assert ready["message"].startswith("spec.podTemplate.spec.hostNetwork: ")
    assert "workload policy (baseline)" in ready["message"]
    events = wait_for(
        "the PolicyViolation Event",
        lambda: [
            e
            for e in core.list_namespaced_event(
                namespace, field_selector="involvedObject.name=host"
            ).items
            if e.reason == "PolicyViolation"
        ],
    )
    assert events[0].type == "Warning"
    assert "spec.podTemplate.spec.hostNetwork" in events[0].message
    assert batch.list_namespaced_job(namespace).items == []

    # Fixed by its author, it proceeds without anyone restarting anything.
    custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        "trainingjobs",
        "host",
        {"spec": {"podTemplate": {"spec": {"hostNetwork": None}}}},
    )
    wait_for("the attempt's Job", lambda: batch.list_namespaced_job(namespace).items, timeout=30)


def test_the_chart_hands_the_workload_policy_to_the_operator() -> None:
    def env(*args: str) -> dict[str, str]:
        deployment = next(d for d in render(*args) if d["kind"] == "Deployment")
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        return {e["name"]: e.get("value") for e in container["env"]}

    defaults = env()
    assert defaults["STRATUS_WORKLOAD_POLICY"] == "baseline"
    assert "STRATUS_ALLOWED_SERVICE_ACCOUNTS" not in defaults
    chosen = env(
        "--set", "workloadPolicy=restricted", "--set", "allowedServiceAccounts={model-reader}"
    )
    assert chosen["STRATUS_WORKLOAD_POLICY"] == "restricted"
    assert chosen["STRATUS_ALLOWED_SERVICE_ACCOUNTS"] == "model-reader"
    with pytest.raises(RuntimeError, match="/workloadPolicy"):
        render("--set", "workloadPolicy=privileged")
