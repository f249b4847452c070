"""Serving capacity on the real node: a real HorizontalPodAutoscaler, fed by a real
metrics-server, scales a CPU-loaded stable up and the operator leaves its size alone; a canary
whose pods never become Ready is rolled back at its progress deadline, and the stable's ready
capacity never drops below its size before the canary."""

from __future__ import annotations

import http.client
import threading
import time
from typing import Any

import pytest
from kubernetes import client

from stratus.api.common import GROUP, VERSION
from stratus.serving.labels import INFERENCESERVICE_LABEL, REVISION_LABEL
from tests.e2e.test_real_canary import BODY, IMAGE, PORT, ModelFiles, get_json, model_files
from tests.e2e.test_serving import Serving, serving
from tests.support import Recorder, wait_for

pytestmark = pytest.mark.usefixtures("operator")
__all__ = ["model_files", "serving"]  # fixtures, shared with the other serving tests

OPERATOR_MANAGER = "stratus"  # the operator's field manager


def inference_service(
    name: str, files: ModelFiles, replicas: dict[str, int], **spec: Any
) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "InferenceService",
        "metadata": {"name": name},
        "spec": {
            "image": IMAGE,
            "env": [{"name": "REVISION", "value": "v1"}],
            "model": {"uri": files.uri, "sha256": files.sha256, "caConfigMap": "model-ca"},
            "port": PORT,
            "readinessPath": "/healthz",
            "resources": {"gpu": 0, "cpu": "50m", "memory": "128Mi"},
            "replicas": replicas,
            "podTemplate": {
                "spec": {
                    "containers": [{"name": "server", "imagePullPolicy": "Never"}],
                    "initContainers": [{"name": "stage-model", "imagePullPolicy": "Never"}],
                }
            },
            **spec,
        },
    }


def create(serving: Serving, files: ModelFiles, body: dict[str, Any]) -> None:
    client.CoreV1Api(serving.cluster.api).create_namespaced_config_map(
        serving.ns,
        {"metadata": {"name": "model-ca"}, "data": {"ca.crt": files.tls.ca.read_text()}},
    )
    serving.custom.create_namespaced_custom_object(
        GROUP, VERSION, serving.ns, "inferenceservices", body
    )


class Hammer:
    """Threads that POST /predict through the Service's ClusterIP, back to back, each request on
    a new connection so that kube-proxy spreads them over every ready pod."""

    def __init__(self, cluster_ip: str, threads: int = 4) -> None:
        self.cluster_ip = cluster_ip
        self.answered = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            conn = http.client.HTTPConnection(self.cluster_ip, 80, timeout=5)
            try:
                conn.request("POST", "/predict", body=BODY, headers={"Connection": "close"})
                if conn.getresponse().status == 200:
                    self.answered += 1
            except (OSError, http.client.HTTPException):
                self._stop.wait(0.2)
            finally:
                conn.close()


def stable_deployment(serving: Serving, name: str) -> Any:
    status = serving.status(name)
    return serving.apps.read_namespaced_deployment(f"{name}-{status['stableRevision']}", serving.ns)


def replicas_owners(deployment: Any) -> set[str]:
    """The field managers that claim spec.replicas."""
    return {
        entry.manager
        for entry in deployment.metadata.managed_fields or []
        if "f:replicas" in (entry.fields_v1 or {}).get("f:spec", {})
    }


@pytest.mark.usefixtures("real_node")
def test_a_cpu_loaded_stable_is_scaled_up_by_a_real_hpa_and_left_alone(
    serving: Serving, model_files: ModelFiles
) -> None:
    create(
        serving,
        model_files,
        inference_service(
            "busy", model_files, {"min": 1, "max": 3}, autoscaling={"metric": "cpu", "target": 20}
        ),
    )
    serving.wait("busy", "Healthy", lambda s: s.get("phase") == "Healthy", timeout=120)
    core = client.CoreV1Api(serving.cluster.api)
    hpas = client.AutoscalingV2Api(serving.cluster.api)
    wait_for(
        "metrics-server to report the stable's CPU to the HPA",
        lambda: (
            hpas.read_namespaced_horizontal_pod_autoscaler(
                "busy", serving.ns
            ).status.current_metrics
            or [None]
        )[0],
        timeout=90,
        interval=2,
    )
    ip = core.read_namespaced_service("busy", serving.ns).spec.cluster_ip
    hammer = Hammer(ip)
    try:
        deployment = wait_for(
            "the HPA to scale the stable up",
            lambda: (d := stable_deployment(serving, "busy")).spec.replicas > 1 and d,
            timeout=150,
            interval=2,
        )
        scaled = deployment.spec.replicas
        # A spec-neutral change makes the operator reconcile while the HPA holds the size.
        serving.custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            serving.ns,
            "inferenceservices",
            "busy",
            {"metadata": {"labels": {"touched": "yes"}}},
        )
        time.sleep(10)
        deployment = stable_deployment(serving, "busy")
        assert deployment.spec.replicas >= scaled, "the operator shrank what the HPA scaled"
        assert OPERATOR_MANAGER not in replicas_owners(deployment), replicas_owners(deployment)
        assert serving.status("busy")["phase"] == "Healthy"
        assert hammer.answered > 0
    finally:
        hammer.stop()
    # Level-triggered: the Service and PDB deleted by hand come back, and serve again.
    policy = client.PolicyV1Api(serving.cluster.api)
    old = core.read_namespaced_service("busy", serving.ns).metadata.uid
    core.delete_namespaced_service("busy", serving.ns)
    policy.delete_namespaced_pod_disruption_budget("busy", serving.ns)
    wait_for(
        "the Service and PDB recreated",
        lambda: (
            core.list_namespaced_service(serving.ns, field_selector="metadata.name=busy").items
            and core.read_namespaced_service("busy", serving.ns).metadata.uid != old
            and policy.list_namespaced_pod_disruption_budget(
                serving.ns, field_selector="metadata.name=busy"
            ).items
        ),
        timeout=20,
    )
    ip = core.read_namespaced_service("busy", serving.ns).spec.cluster_ip
    assert wait_for("an answer through the new Service", lambda: get_json(ip, "/"))


@pytest.mark.usefixtures("real_node")
def test_a_canary_never_ready_is_rolled_back_at_its_deadline_and_stable_capacity_kept(
    serving: Serving, model_files: ModelFiles
) -> None:
    core = client.CoreV1Api(serving.cluster.api)
    create(
        serving,
        model_files,
        inference_service(
            "stuck",
            model_files,
            {"min": 2, "max": 2},
            rollout={"steps": [{"weight": 50}, {"weight": 100}], "progressDeadline": "20s"},
        ),
    )
    status = serving.wait("stuck", "Healthy", lambda s: s.get("phase") == "Healthy", timeout=120)
    stable = status["stableRevision"]
    pods = Recorder(
        core.list_namespaced_pod,
        serving.ns,
        label_selector=f"{INFERENCESERVICE_LABEL}=stuck",
    )
    try:
        # The new revision's readiness path answers 404: its pods run and are never Ready.
        serving.custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            serving.ns,
            "inferenceservices",
            "stuck",
            {"spec": {"readinessPath": "/never-ready"}},
        )
        status = serving.wait(
            "stuck",
            "the canary rolled back",
            lambda s: s.get("abortedRevision") is not None and s.get("canaryRevision") is None,
            timeout=120,
        )
    finally:
        pods.stop()
    canary = status["abortedRevision"]
    assert status["stableRevision"] == stable
    message = status["message"]
    assert "rollout.progressDeadline (20s)" in message, message
    assert "0 of 1 canary pods ready" in message, message
    wait_for(
        "a ProgressDeadlineExceeded event",
        lambda: any(
            e.reason == "ProgressDeadlineExceeded"
            for e in core.list_namespaced_event(
                serving.ns, field_selector="involvedObject.name=stuck"
            ).items
        ),
    )
    # Every version of every pod the watch reported, replayed in order: the stable's ready,
    # not-terminating pods never numbered fewer than its two replicas.
    ready: dict[str, bool] = {}
    lowest = 2
    canary_seen = False
    seen = []
    for pod in pods.objects:
        revision = pod.metadata.labels.get(REVISION_LABEL)
        canary_seen |= revision == canary
        if revision != stable:
            continue
        ready[pod.metadata.name] = pod.metadata.deletion_timestamp is None and any(
            c.type == "Ready" and c.status == "True" for c in pod.status.conditions or []
        )
        seen.append(f"{pod.metadata.name} {pod.status.phase} ready={ready[pod.metadata.name]}")
        if len(ready) >= 2:  # the watch's first events are the pods one by one
            lowest = min(lowest, sum(ready.values()))
    assert canary_seen, "the canary never had a pod"
    assert lowest == 2, f"the stable fell to {lowest} ready pods during the canary: {seen}"
    wait_for(
        "the canary's pods gone",
        lambda: (
            not core.list_namespaced_pod(
                serving.ns, label_selector=f"{REVISION_LABEL}={canary}"
            ).items
        ),
        timeout=60,
    )
