"""Pods the cluster refuses, end to end: a TrainingJob whose PriorityClass does not exist, and an
InferenceService in a namespace whose ResourceQuota allows no pods, say so within seconds with
the API server's own message (a condition and one Warning Event), and recover by themselves
once the cause is gone. Simulated pods (kwok) are enough: the refusal is the API server's."""

from __future__ import annotations

import copy
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from stratus.api.common import GROUP, VERSION
from tests.builders import TrainingJobBuilder
from tests.conftest import Cluster
from tests.e2e.test_serving import Serving, service
from tests.e2e.test_training import Env
from tests.support import wait_for

pytestmark = pytest.mark.usefixtures("operator")
Obj = dict[str, Any]


def conditions(status: Obj) -> dict[str, Obj]:
    return {c["type"]: c for c in status.get("conditions") or []}


@pytest.fixture
def missing_priority_class(cluster: Cluster) -> Iterator[str]:
    """A PriorityClass name that does not exist yet; deleted afterwards if a test made it."""
    name = f"stratus-e2e-{uuid.uuid4().hex[:8]}"
    try:
        yield name
    finally:
        try:
            client.SchedulingV1Api(cluster.api).delete_priority_class(name)
        except ApiException as exc:
            if exc.status != 404:
                raise


def test_a_trainingjob_whose_pods_are_refused_says_why_and_runs_once_allowed(
    cluster: Cluster, namespace: str, missing_priority_class: str
) -> None:
    env = Env(cluster, namespace)
    job = TrainingJobBuilder("refused").runs_for("2s").build()
    job["spec"]["priorityClassName"] = missing_priority_class
    started = time.monotonic()
    env.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "trainingjobs", job)
    obj = env.wait(
        "refused",
        "Ready=False PodsNotCreated",
        lambda s: conditions(s).get("Ready", {}).get("reason") == "PodsNotCreated",
        timeout=15,
    )
    shown_after = time.monotonic() - started
    status = obj["status"]
    ready, scheduled = conditions(status)["Ready"], conditions(status)["Scheduled"]
    # The API server's message, as the Job controller was given it.
    expected = f"no PriorityClass with name {missing_priority_class} was found"
    assert ready["status"] == "False"
    assert ready["message"].startswith("attempt 1 cannot create its pods: "), ready
    assert expected in ready["message"], ready
    assert "\n" not in ready["message"]
    assert (scheduled["status"], scheduled["reason"]) == ("False", "PodsNotCreated")
    assert status["phase"] == "Pending"
    assert status["message"] == ready["message"]
    assert shown_after < 12, f"shown {shown_after:.1f}s after creation"
    wait_for(
        "a PodsNotCreated Warning Event",
        lambda: [
            e
            for e in env.events("refused")
            if e.reason == "PodsNotCreated" and e.type == "Warning" and expected in e.message
        ],
        timeout=15,
    )
    # The cause is fixed: the Job controller's next try makes the pod, and the attempt runs.
    client.SchedulingV1Api(cluster.api).create_priority_class(
        {"metadata": {"name": missing_priority_class}, "value": 1000}
    )
    done = env.wait("refused", "Succeeded", lambda s: s.get("phase") == "Succeeded", timeout=150)[
        "status"
    ]
    assert (done["attempt"], done["restarts"]) == (1, 0)
    assert conditions(done)["Scheduled"]["reason"] != "PodsNotCreated"
    assert "cannot create its pods" not in done["message"]
    # Rechecked every few seconds while refused, the same reason was posted once.
    refusals = [e.message for e in env.events("refused") if e.reason == "PodsNotCreated"]
    assert len(refusals) == 1, refusals
    assert [e.reason for e in env.events("refused")].count("AttemptStarted") == 1


@pytest.fixture
def no_pods(cluster: Cluster, namespace: str) -> str:
    """A ResourceQuota of no pods in the test's namespace, in force (its usage computed, so
    admission refuses with "exceeded quota")."""
    core = client.CoreV1Api(cluster.api)
    core.create_namespaced_resource_quota(
        namespace, {"metadata": {"name": "no-pods"}, "spec": {"hard": {"pods": "0"}}}
    )

    def in_force() -> bool:
        quota = core.read_namespaced_resource_quota("no-pods", namespace)
        return bool(quota.status and quota.status.hard)

    wait_for("the quota's usage", in_force)
    return "no-pods"


def test_an_inferenceservice_whose_pods_are_refused_says_why_and_heals_once_allowed(
    cluster: Cluster, namespace: str, no_pods: str
) -> None:
    serving = Serving(cluster, namespace)
    obj = service("quota")
    obj["spec"]["replicas"] = {"min": 1, "max": 1}
    serving.create(copy.deepcopy(obj))
    status = serving.wait(
        "quota",
        "Healthy=False PodsNotCreated",
        lambda s: conditions(s).get("Healthy", {}).get("reason") == "PodsNotCreated",
        timeout=30,
    )
    healthy = conditions(status)["Healthy"]
    revision = status["stableRevision"]
    assert healthy["status"] == "False"
    assert healthy["message"].startswith(f"revision {revision} cannot create pods: "), healthy
    assert f"exceeded quota: {no_pods}" in healthy["message"], healthy
    assert status["phase"] == "Progressing"
    core = client.CoreV1Api(cluster.api)

    def warnings() -> list[Any]:
        return [
            e
            for e in core.list_namespaced_event(
                namespace, field_selector="involvedObject.kind=InferenceService"
            ).items
            if e.reason == "PodsNotCreated"
        ]

    wait_for("a PodsNotCreated Warning Event", warnings, timeout=15)
    # The quota goes: the ReplicaSet's next try makes the pod, and the condition clears.
    core.delete_namespaced_resource_quota(no_pods, namespace)
    healed = serving.wait("quota", "Healthy", lambda s: s.get("phase") == "Healthy", timeout=150)
    assert conditions(healed)["Healthy"]["status"] == "True"
    assert conditions(healed)["Healthy"]["reason"] == "StableReady"
    assert healed["readyReplicas"] == 1
    assert len(warnings()) == 1
