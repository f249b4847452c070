"""Smoke tests that prove the local control plane is real: each asserts on what the API server
reports after the real controllers, scheduler and kwok have acted."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from stratus.cli import main as stratus_main
from stratus.devcluster.nodepools import SIMULATED_LABEL, SIMULATED_TOLERATION
from tests.conftest import Cluster
from tests.support import Recorder, token_client, wait_for

GPU = "nvidia.com/gpu"
SPOT_TOLERATION = {
    "key": "karpenter.sh/capacity-type",
    "operator": "Equal",
    "value": "spot",
    "effect": "NoSchedule",
}
SPOT_SELECTOR = {"karpenter.sh/capacity-type": "spot"}
# Clusters without the ExtendedResourceToleration admission plugin need it spelled out.
GPU_TOLERATION = {"key": GPU, "operator": "Exists", "effect": "NoSchedule"}


def gpu_job(
    name: str,
    annotations: dict[str, str] | None = None,
    pod_failure_policy: dict[str, Any] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "backoffLimit": 0,
        "template": {
            "metadata": {"annotations": annotations or {}},
            "spec": {
                "restartPolicy": "Never",
                "nodeSelector": {**SPOT_SELECTOR, **SIMULATED_LABEL},
                "tolerations": [SPOT_TOLERATION, GPU_TOLERATION, SIMULATED_TOLERATION],
                "containers": [
                    {
                        "name": "train",
                        "image": "example.com/train:1",
                        "resources": {"limits": {GPU: "1"}},
                    }
                ],
            },
        },
    }
    if pod_failure_policy:
        spec["podFailurePolicy"] = pod_failure_policy
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name}, "spec": spec}


def job_condition(batch: client.BatchV1Api, ns: str, name: str, kind: str) -> bool:
    job = batch.read_namespaced_job(name, ns)
    return any(c.type == kind and c.status == "True" for c in job.status.conditions or [])


def job_pods(core: client.CoreV1Api, ns: str, job: str) -> list[Any]:
    return list(core.list_namespaced_pod(ns, label_selector=f"job-name={job}").items)


def test_gpu_nodes_are_ready_with_allocatable_gpus(cluster: Cluster) -> None:
    nodes = client.CoreV1Api(cluster.api).list_node().items
    gpu_nodes = [n for n in nodes if int(n.status.allocatable.get(GPU, "0")) > 0]
    assert len(gpu_nodes) >= 2
    for node in gpu_nodes:
        assert node.metadata.labels["nvidia.com/gpu.product"]
        ready = {c.type: c.status for c in node.status.conditions}.get("Ready")
        assert ready == "True", node.metadata.name
    capacity_types = {n.metadata.labels.get("karpenter.sh/capacity-type") for n in gpu_nodes}
    assert capacity_types == {"spot", "on-demand"}


def test_gpu_job_with_spot_toleration_lands_on_spot_node_and_completes(
    cluster: Cluster, namespace: str
) -> None:
    batch, core = client.BatchV1Api(cluster.api), client.CoreV1Api(cluster.api)
    batch.create_namespaced_job(namespace, gpu_job("spot-job"))
    wait_for("Job Complete", lambda: job_condition(batch, namespace, "spot-job", "Complete"))
    (pod,) = job_pods(core, namespace, "spot-job")
    node = core.read_node(pod.spec.node_name)
    assert node.metadata.labels["karpenter.sh/capacity-type"] == "spot"
    assert pod.status.phase == "Succeeded"


def test_pod_asking_for_more_gpus_than_any_node_stays_unschedulable(
    cluster: Cluster, namespace: str
) -> None:
    core = client.CoreV1Api(cluster.api)
    core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": "too-big"},
            "spec": {
                "tolerations": [GPU_TOLERATION, SIMULATED_TOLERATION],
                "nodeSelector": SIMULATED_LABEL,
                "containers": [
                    {"name": "c", "image": "example.com/x:1", "resources": {"limits": {GPU: "9"}}}
                ],
            },
        },
    )

    def unschedulable() -> Any:
        pod = core.read_namespaced_pod("too-big", namespace)
        return [
            c
            for c in pod.status.conditions or []
            if c.type == "PodScheduled" and c.reason == "Unschedulable"
        ]

    (cond,) = wait_for("PodScheduled=False/Unschedulable", unschedulable)
    assert cond.status == "False"
    assert "Insufficient nvidia.com/gpu" in cond.message
    assert core.read_namespaced_pod("too-big", namespace).status.phase == "Pending"


def test_failing_pod_reports_exit_code_and_message(cluster: Cluster, namespace: str) -> None:
    batch, core = client.BatchV1Api(cluster.api), client.CoreV1Api(cluster.api)
    batch.create_namespaced_job(
        namespace,
        gpu_job(
            "fails",
            {
                "stratus.dev/sim-duration": "100ms",
                "stratus.dev/sim-exit-code": "3",
                "stratus.dev/sim-termination-message": "CUDA error: out of memory",
            },
        ),
    )
    wait_for("Job Failed", lambda: job_condition(batch, namespace, "fails", "Failed"))
    (pod,) = job_pods(core, namespace, "fails")
    terminated = pod.status.container_statuses[0].state.terminated
    assert pod.status.phase == "Failed"
    assert (terminated.exit_code, terminated.message) == (3, "CUDA error: out of memory")


def test_preempted_spot_node_gives_disruption_target_and_job_replaces_pod(
    cluster: Cluster, namespace: str
) -> None:
    batch, core = client.BatchV1Api(cluster.api), client.CoreV1Api(cluster.api)
    ignore_disruptions = {
        "rules": [
            {
                "action": "Ignore",
                "onPodConditions": [{"type": "DisruptionTarget"}],
            }
        ]
    }
    batch.create_namespaced_job(
        namespace, gpu_job("long", {"stratus.dev/sim-duration": "10m"}, ignore_disruptions)
    )
    first = wait_for(
        "a Running pod",
        lambda: [p for p in job_pods(core, namespace, "long") if p.status.phase == "Running"],
    )[0]

    recorder = Recorder(
        core.list_namespaced_pod, namespace, field_selector=f"metadata.name={first.metadata.name}"
    )
    args = [
        "dev",
        "preempt",
        first.spec.node_name,
        "--replace",
        "--kubeconfig",
        str(cluster.kubeconfig),
    ]
    assert stratus_main(args) == 0

    def disrupted_and_replaced() -> Any:
        pods = {p.metadata.name: p for p in job_pods(core, namespace, "long")}
        new = [p for name, p in pods.items() if name != first.metadata.name]
        return new if new else None

    replacement = wait_for("a replacement pod", disrupted_and_replaced)
    assert replacement[0].spec.node_name != first.spec.node_name
    # The disrupted pod is gone once the Job controller has accounted for it; its disruption is
    # visible in the Job's status: ignored by the policy, so not counted as a failure.
    wait_for(
        "the old pod removed",
        lambda: (
            not any(
                p.metadata.name == first.metadata.name for p in job_pods(core, namespace, "long")
            )
        ),
    )
    seen = recorder.stop()
    final = seen[-1]
    (disruption,) = [c for c in final.status.conditions if c.type == "DisruptionTarget"]
    assert disruption.status == "True"
    assert disruption.reason == "DeletionByTaintManager"
    assert final.status.phase == "Failed"
    assert final.status.container_statuses[0].state.terminated.exit_code == 143
    job = batch.read_namespaced_job("long", namespace)
    assert not job.status.failed
    assert not any(c.type == "Failed" for c in job.status.conditions or [])
    wait_for(
        "a TaintManagerEviction event",
        lambda: any(
            e.reason == "TaintManagerEviction"
            for e in core.list_namespaced_event(
                namespace, field_selector=f"involvedObject.name={first.metadata.name}"
            ).items
        ),
    )


def test_unprivileged_service_account_token_is_forbidden_from_secrets(
    cluster: Cluster, namespace: str
) -> None:
    core = client.CoreV1Api(cluster.api)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "nobody"}})
    token = core.create_namespaced_service_account_token(
        "nobody", namespace, {"spec": {"expirationSeconds": 600}}
    ).status.token
    as_nobody = token_client(cluster.api, token)

    # The token is real: the API server authenticates it as the ServiceAccount...
    review = client.AuthenticationV1Api(as_nobody).create_self_subject_review(
        {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    )
    assert review.status.user_info.username == f"system:serviceaccount:{namespace}:nobody"
    # ...and RBAC, not authentication, refuses it.
    with pytest.raises(ApiException) as refused:
        client.CoreV1Api(as_nobody).list_namespaced_secret(namespace)
    assert refused.value.status == 403
    assert "forbidden" in refused.value.body


def test_deleting_an_owner_garbage_collects_its_dependents(
    cluster: Cluster, namespace: str
) -> None:
    core = client.CoreV1Api(cluster.api)
    owner = core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}})
    core.create_namespaced_config_map(
        namespace,
        {
            "metadata": {
                "name": "dependent",
                "ownerReferences": [
                    {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "name": "owner",
                        "uid": owner.metadata.uid,
                    }
                ],
            }
        },
    )
    core.delete_namespaced_config_map("owner", namespace)

    def gone() -> bool:
        names = {c.metadata.name for c in core.list_namespaced_config_map(namespace).items}
        return "dependent" not in names

    wait_for("the dependent to be garbage-collected", gone)
