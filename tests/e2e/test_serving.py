"""InferenceService end to end: revisions as Deployments, a canary walked by replica ratio,
promoted and rolled back through the `stratus` commands, Recreate."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from stratus.api.common import GROUP, VERSION
from stratus.cli import main as stratus_main
from stratus.devcluster.nodepools import SIMULATED_POD_SPEC
from tests.conftest import Cluster, OperatorProcess
from tests.support import wait_for

pytestmark = pytest.mark.usefixtures("operator")
Obj = dict[str, Any]


def service(name: str, image: str = "serve:1", strategy: str = "Canary") -> Obj:
    rollout: Obj = {"strategy": strategy, "analysis": {"interval": "1s"}}
    if strategy == "Canary":
        rollout["steps"] = [{"weight": 50, "pause": {}}, {"weight": 100}]
    return {
        "apiVersion": "stratus.dev/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": name},
        "spec": {
            "image": image,
            "model": {"uri": "https://models.example.com/m.bin"},
            "replicas": {"min": 4, "max": 4},
            "rollout": rollout,
            # Simulated: kwok plays the kubelet, even beside a real node.
            "podTemplate": {"spec": copy.deepcopy(SIMULATED_POD_SPEC)},
        },
    }


class Serving:
    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self.cluster = cluster
        self.ns = namespace
        self.custom = client.CustomObjectsApi(cluster.api)
        self.apps = client.AppsV1Api(cluster.api)

    def create(self, obj: Obj) -> None:
        self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.ns, "inferenceservices", obj
        )

    def status(self, name: str) -> Obj:
        obj = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.ns, "inferenceservices", name
        )
        status: Obj = obj.get("status") or {}
        return status

    def wait(self, name: str, what: str, check: Any, timeout: float = 60) -> Obj:
        seen: list[Obj] = []

        def probe() -> Obj | None:
            seen[:] = [self.status(name)]
            return seen[0] if check(seen[0]) else None

        try:
            return wait_for(f"{name}: {what}", probe, timeout=timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; status: {seen[0] if seen else None}") from None

    def wait_condition(self, name: str, kind: str, value: str) -> tuple[Obj, Obj]:
        """Wait until the condition `kind` has status `value`: the status, and the condition."""

        def conditions(status: Obj) -> dict[str, Obj]:
            return {c["type"]: c for c in status.get("conditions", [])}

        status = self.wait(
            name,
            f"{kind}={value}",
            lambda s: conditions(s).get(kind, {}).get("status") == value,
        )
        return status, conditions(status)[kind]

    def set_image(self, name: str, image: str) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.ns, "inferenceservices", name, {"spec": {"image": image}}
        )

    def replicas(self, name: str) -> dict[str, int]:
        deployments = self.apps.list_namespaced_deployment(
            self.ns, label_selector=f"stratus.dev/inferenceservice={name}"
        ).items
        return {d.metadata.labels["stratus.dev/revision"]: d.spec.replicas for d in deployments}

    def command(self, *args: str) -> None:
        assert (
            stratus_main([*args, "-n", self.ns, "--kubeconfig", str(self.cluster.kubeconfig)]) == 0
        )


@pytest.fixture
def serving(cluster: Cluster, namespace: str) -> Serving:
    return Serving(cluster, namespace)


def test_first_revision_goes_straight_to_stable(serving: Serving) -> None:
    serving.create(service("web"))
    status = serving.wait("web", "Healthy", lambda s: s.get("phase") == "Healthy")
    assert status["readyReplicas"] == 4
    assert status["url"] == f"http://web.{serving.ns}.svc.cluster.local"
    assert serving.replicas("web") == {status["stableRevision"]: 4}
    core = client.CoreV1Api(serving.cluster.api)
    svc = core.read_namespaced_service("web", serving.ns)
    assert svc.spec.selector == {"stratus.dev/inferenceservice": "web"}
    pdb = client.PolicyV1Api(serving.cluster.api).read_namespaced_pod_disruption_budget(
        "web", serving.ns
    )
    assert pdb.spec.max_unavailable == 1
    (deployment,) = serving.apps.list_namespaced_deployment(serving.ns).items
    pod = deployment.spec.template.spec
    assert pod.init_containers[0].command[:4] == ["python", "-m", "stratus.storage", "fetch"]
    assert pod.containers[0].readiness_probe.http_get.path == "/healthz"
    assert pod.containers[0].resources.limits == {"nvidia.com/gpu": "1"}


def test_canary_walks_its_steps_and_is_promoted(serving: Serving) -> None:
    serving.create(service("web"))
    stable = serving.wait("web", "Healthy", lambda s: s.get("phase") == "Healthy")["stableRevision"]
    serving.set_image("web", "serve:2")
    status = serving.wait("web", "paused at 50%", lambda s: s.get("phase") == "Paused")
    canary = status["canaryRevision"]
    assert status["canaryWeight"] == 50
    assert serving.replicas("web") == {stable: 2, canary: 2}
    serving.command("promote", "web")
    status = serving.wait(
        "web",
        "promoted",
        lambda s: s.get("stableRevision") == canary and s.get("phase") == "Healthy",
    )
    assert status["canaryWeight"] == 0
    wait_for("the old stable retired", lambda: serving.replicas("web") == {canary: 4})


def test_abort_rolls_back_and_retry_tries_again(serving: Serving) -> None:
    serving.create(service("web"))
    stable = serving.wait("web", "Healthy", lambda s: s.get("phase") == "Healthy")["stableRevision"]
    serving.set_image("web", "serve:bad")
    canary = serving.wait("web", "paused", lambda s: s.get("phase") == "Paused")["canaryRevision"]
    serving.command("abort", "web")
    status = serving.wait("web", "Degraded", lambda s: s.get("phase") == "Degraded")
    assert status["stableRevision"] == stable
    assert status["abortedRevision"] == canary
    rolled_back = {c["type"]: c for c in status["conditions"]}["Healthy"]
    assert rolled_back["reason"] == "RolledBack"
    wait_for(
        "stable at full size, canary scaled to zero",
        lambda: serving.replicas("web") == {stable: 4, canary: 0},
    )
    serving.command("retry", "web")
    serving.wait("web", "canary again", lambda s: s.get("canaryRevision") == canary)


def test_recreate_replaces_without_a_canary(serving: Serving) -> None:
    serving.create(service("batch", strategy="Recreate"))
    first = serving.wait("batch", "Healthy", lambda s: s.get("phase") == "Healthy")[
        "stableRevision"
    ]
    serving.set_image("batch", "serve:2")
    status = serving.wait(
        "batch",
        "replaced",
        lambda s: s.get("stableRevision") != first and s.get("phase") == "Healthy",
    )
    assert "canaryRevision" not in status
    assert serving.replicas("batch") == {status["stableRevision"]: 4}


def test_a_spec_change_mid_canary_supersedes_it(serving: Serving) -> None:
    serving.create(service("web"))
    stable = serving.wait("web", "Healthy", lambda s: s.get("phase") == "Healthy")["stableRevision"]
    serving.set_image("web", "serve:2")
    first = serving.wait("web", "paused", lambda s: s.get("phase") == "Paused")["canaryRevision"]
    serving.set_image("web", "serve:3")
    second = serving.wait(
        "web",
        "a new canary",
        lambda s: s.get("canaryRevision") not in (None, first) and s.get("phase") == "Paused",
    )["canaryRevision"]
    wait_for(
        "the superseded canary deleted", lambda: serving.replicas("web") == {stable: 2, second: 2}
    )


def test_operator_killed_mid_rollout_resumes_at_its_step(
    serving: Serving, operator: OperatorProcess
) -> None:
    serving.create(service("web"))
    stable = serving.wait("web", "Healthy", lambda s: s.get("phase") == "Healthy")["stableRevision"]
    serving.set_image("web", "serve:2")
    before = serving.wait("web", "paused", lambda s: s.get("phase") == "Paused")
    operator.kill()
    operator.start()
    canary = before["canaryRevision"]
    after = serving.wait(
        "web",
        "still paused at 50%",
        lambda s: s.get("phase") == "Paused" and s.get("canaryWeight") == 50,
    )
    assert (after["currentStep"], after["canaryRevision"]) == (0, canary)
    assert serving.replicas("web") == {stable: 2, canary: 2}
    serving.command("promote", "web")
    serving.wait("web", "promoted", lambda s: s.get("stableRevision") == canary)


def test_a_deleted_service_pdb_and_hpa_come_back(serving: Serving) -> None:
    """Level-triggered: children deleted by hand on a Healthy service, where nothing else
    changes, are recreated by the watches on them."""
    obj = service("web")
    obj["spec"]["autoscaling"] = {"metric": "cpu", "target": 70}
    serving.create(obj)
    serving.wait("web", "Healthy", lambda s: s.get("phase") == "Healthy")
    core = client.CoreV1Api(serving.cluster.api)
    policy = client.PolicyV1Api(serving.cluster.api)
    scaling = client.AutoscalingV2Api(serving.cluster.api)
    old = core.read_namespaced_service("web", serving.ns).metadata.uid
    core.delete_namespaced_service("web", serving.ns)
    policy.delete_namespaced_pod_disruption_budget("web", serving.ns)
    scaling.delete_namespaced_horizontal_pod_autoscaler("web", serving.ns)

    def recreated() -> bool:
        try:
            svc = core.read_namespaced_service("web", serving.ns)
            policy.read_namespaced_pod_disruption_budget("web", serving.ns)
            scaling.read_namespaced_horizontal_pod_autoscaler("web", serving.ns)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return bool(svc.metadata.uid != old)

    wait_for("the Service, PDB and HPA recreated", recreated, timeout=20)


def test_deleting_the_inferenceservice_removes_every_child(serving: Serving) -> None:
    obj = service("web")
    obj["spec"]["autoscaling"] = {"metric": "cpu", "target": 70}
    serving.create(obj)
    serving.wait("web", "Healthy", lambda s: s.get("phase") == "Healthy")
    hpa = client.AutoscalingV2Api(serving.cluster.api).read_namespaced_horizontal_pod_autoscaler(
        "web", serving.ns
    )
    assert (hpa.spec.min_replicas, hpa.spec.max_replicas) == (4, 4)
    assert hpa.spec.metrics[0].resource.target.average_utilization == 70
    serving.custom.delete_namespaced_custom_object(
        GROUP, VERSION, serving.ns, "inferenceservices", "web"
    )
    core = client.CoreV1Api(serving.cluster.api)
    wait_for(
        "Deployments, pods, Service, PDB and HPA collected",
        lambda: (
            not any(
                (
                    serving.replicas("web"),
                    core.list_namespaced_pod(serving.ns).items,
                    core.list_namespaced_service(serving.ns).items,
                    client.PolicyV1Api(serving.cluster.api)
                    .list_namespaced_pod_disruption_budget(serving.ns)
                    .items,
                    client.AutoscalingV2Api(serving.cluster.api)
                    .list_namespaced_horizontal_pod_autoscaler(serving.ns)
                    .items,
                )
            )
        ),
    )


def test_a_model_that_fails_staging_is_a_clear_condition(serving: Serving) -> None:
    obj = service("broken")
    # Credentials and a presigned query in the message (as an older staging image would leave
    # them) never reach the status.
    reason = (
        "model staging failed: https://user:s3cret@models.example.com/m.bin?sig=t0ken: "
        f"sha256 mismatch: expected {'a' * 64}, got {'b' * 64}"
    )
    obj["spec"]["podTemplate"]["metadata"] = {
        "annotations": {
            "stratus.dev/sim-init-exit-code": "1",
            "stratus.dev/sim-termination-message": reason,
        }
    }
    serving.create(obj)
    status, staged = serving.wait_condition("broken", "ModelStaged", "False")
    assert staged["reason"] == "StagingFailed"
    assert staged["message"].endswith(
        "model staging failed: https://***@models.example.com/m.bin?***: sha256 mismatch: "
        f"expected {'a' * 64}, got {'b' * 64}"
    )
    assert "s3cret" not in staged["message"]
    assert "t0ken" not in staged["message"]
    assert status["phase"] == "Progressing"
