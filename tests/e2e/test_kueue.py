"""TrainingJobs under real Kueue (built from its Go module, running beside the session's control
plane): queued while the quota is in use, admitted when it frees; a Kueue preemption counted as
a preemption and resumed from the checkpoint; spot quota exhausted, the attempt runs on the
on-demand flavor. Pods are kwok's."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from stratus.api.common import GROUP, VERSION
from stratus.devcluster import kubeapi, kueue, nodepools
from stratus.devcluster.cluster import LocalCluster
from tests.builders import TrainingJobBuilder
from tests.conftest import Cluster
from tests.support import wait_for

pytestmark = pytest.mark.usefixtures("operator")
Obj = dict[str, Any]
SPOT = nodepools.CAPACITY_TYPE_LABEL


@pytest.fixture(scope="module")
def kueue_running(cluster: Cluster) -> Iterator[None]:
    """Kueue beside the session's cluster, with the spot and on-demand flavors. Stopped only once
    its finalizers are off every Workload, ClusterQueue and flavor, so that no namespace of the
    session is left terminating."""
    if cluster.state_dir is None:
        raise AssertionError("these tests start Kueue beside the session's local control plane")
    local = LocalCluster(cluster.state_dir)
    local.start_kueue()
    api = client.CustomObjectsApi(cluster.api)
    try:
        kubeapi.connect(cluster.kubeconfig).create_custom(kueue.flavors())
        yield
        for flavor in (kueue.SPOT_FLAVOR, kueue.ON_DEMAND_FLAVOR):
            api.delete_cluster_custom_object(kueue.GROUP, kueue.VERSION, "resourceflavors", flavor)
        for plural in ("workloads", "clusterqueues", "resourceflavors"):
            wait_for(f"every {plural} gone", partial(_none_left, api, plural), timeout=120)
    finally:
        local.stop_kueue()


def _none_left(api: client.CustomObjectsApi, plural: str) -> bool:
    return not api.list_cluster_custom_object(kueue.GROUP, kueue.VERSION, plural)["items"]


class Queues:
    """One test's ClusterQueue (its own quotas) and the LocalQueue `q` in its namespace."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self.cluster = cluster
        self.ns = namespace
        self.custom = client.CustomObjectsApi(cluster.api)
        self.core = client.CoreV1Api(cluster.api)
        self.batch = client.BatchV1Api(cluster.api)
        self.cluster_queue = f"cq-{uuid.uuid4().hex[:8]}"

    def make(self, spot_gpus: int, on_demand_gpus: int, preemption: Obj | None = None) -> None:
        kubeapi.connect(self.cluster.kubeconfig).create_custom(
            [
                kueue.cluster_queue(
                    self.cluster_queue, spot_gpus, on_demand_gpus, preemption=preemption
                ),
                kueue.local_queue(self.ns, "q", self.cluster_queue),
            ]
        )
        wait_for(
            f"ClusterQueue {self.cluster_queue} active",
            lambda: any(
                c["type"] == "Active" and c["status"] == "True"
                for c in self.custom.get_cluster_custom_object(
                    kueue.GROUP, kueue.VERSION, "clusterqueues", self.cluster_queue
                )
                .get("status", {})
                .get("conditions", [])
            ),
        )

    def delete(self) -> None:
        try:
            self.custom.delete_cluster_custom_object(
                kueue.GROUP, kueue.VERSION, "clusterqueues", self.cluster_queue
            )
        except ApiException as exc:
            if exc.status != 404:
                raise

    def create(self, builder: TrainingJobBuilder, priority: str | None = None) -> Obj:
        obj = builder.build()
        obj["spec"]["queueName"] = "q"
        if priority:
            obj["spec"]["priorityClassName"] = priority
        created: Obj = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.ns, "trainingjobs", obj
        )
        return created

    def get(self, name: str) -> Obj:
        obj: Obj = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.ns, "trainingjobs", name
        )
        return obj

    def delete_trainingjob(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.ns, "trainingjobs", name)

    def wait(self, name: str, what: str, check: Callable[[Obj], bool], timeout: float = 60) -> Obj:
        def probe() -> Obj | None:
            obj = self.get(name)
            return obj if check(obj.get("status") or {}) else None

        return wait_for(f"{name}: {what}", probe, timeout=timeout)

    def job(self, name: str) -> Any:
        return wait_for(f"Job {name}", lambda: self._job(name))

    def _job(self, name: str) -> Any:
        try:
            return self.batch.read_namespaced_job(name, self.ns)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def running_pod(self, name: str, attempt: int) -> Any:
        selector = f"stratus.dev/trainingjob={name},stratus.dev/attempt={attempt}"
        return wait_for(
            f"a running pod of {name} attempt {attempt}",
            lambda: next(
                (
                    p
                    for p in self.core.list_namespaced_pod(self.ns, label_selector=selector).items
                    if p.status.phase == "Running"
                ),
                None,
            ),
        )

    def node_capacity(self, node: str) -> str:
        return str(self.core.read_node(node).metadata.labels[SPOT])

    def events(self, name: str) -> list[Any]:
        return list(
            self.core.list_namespaced_event(
                self.ns, field_selector=f"involvedObject.name={name}"
            ).items
        )


@pytest.fixture
def queues(kueue_running: None, cluster: Cluster, namespace: str) -> Iterator[Queues]:
    made = Queues(cluster, namespace)
    try:
        yield made
    finally:
        made.delete()


def ready(status: Obj) -> Obj:
    return next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), {})


def test_a_job_with_a_queue_name_is_admitted_by_kueue_onto_a_flavor(queues: Queues) -> None:
    """Kueue itself: a suspended Job with the queue label is admitted and given the flavor's
    node labels."""
    queues.make(spot_gpus=0, on_demand_gpus=1)
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "plain", "labels": {"kueue.x-k8s.io/queue-name": "q"}},
        "spec": {
            "suspend": True,
            "template": {
                "metadata": {"annotations": {"stratus.dev/sim-duration": "10m"}},
                "spec": {
                    **nodepools.SIMULATED_POD_SPEC,
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "c",
                            "image": "example.com/x:1",
                            "resources": {
                                "requests": {"cpu": "1", "nvidia.com/gpu": "1"},
                                "limits": {"nvidia.com/gpu": "1"},
                            },
                        }
                    ],
                },
            },
        },
    }
    queues.batch.create_namespaced_job(queues.ns, job)
    admitted = wait_for(
        "Job plain unsuspended",
        lambda: (
            j
            if not (j := queues.batch.read_namespaced_job("plain", queues.ns)).spec.suspend
            else None
        ),
    )
    assert admitted.spec.template.spec.node_selector[SPOT] == "on-demand"


def test_queued_while_another_holds_the_quota_then_admitted_and_running(queues: Queues) -> None:
    queues.make(spot_gpus=1, on_demand_gpus=0)
    queues.create(TrainingJobBuilder("first").spot().runs_for("10m"))
    queues.wait("first", "Running", lambda s: s.get("phase") == "Running")
    queues.create(TrainingJobBuilder("second").spot().runs_for("10m"))
    obj = queues.wait(
        "second",
        "Queued with Kueue's reason",
        lambda s: s.get("phase") == "Queued" and "quota" in ready(s).get("message", ""),
    )
    condition = ready(obj["status"])
    assert (condition["status"], condition["reason"]) == ("False", "Queued")
    assert condition["message"].startswith("attempt 1 is queued in LocalQueue q: ")
    assert queues.job("second-1").spec.suspend is True
    assert "Queued" in {e.reason for e in queues.events("second")}

    queues.delete_trainingjob("first")
    queues.wait("second", "Running once the quota frees", lambda s: s.get("phase") == "Running")
    job = queues.job("second-1")
    assert job.spec.suspend is False
    assert job.spec.template.spec.node_selector[SPOT] == "spot"
    pod = queues.running_pod("second", 1)
    assert queues.node_capacity(pod.spec.node_name) == "spot"
    admitted = wait_for(
        "the Admitted Event",
        lambda: next((e for e in queues.events("second") if e.reason == "Admitted"), None),
    )
    assert admitted.message == (
        f"attempt 1 admitted by Kueue to ClusterQueue {queues.cluster_queue} on spot capacity"
    )
    status = queues.get("second")["status"]
    assert (status["attempt"], status["preemptions"], status["restarts"]) == (1, 0, 0)


@pytest.fixture
def priorities(cluster: Cluster) -> Iterator[tuple[str, str]]:
    """A low and a high PriorityClass: Kueue orders and preempts workloads by their pods'."""
    scheduling = client.SchedulingV1Api(cluster.api)
    names = (f"low-{uuid.uuid4().hex[:6]}", f"high-{uuid.uuid4().hex[:6]}")
    for name, value in zip(names, (10, 1000), strict=True):
        scheduling.create_priority_class({"metadata": {"name": name}, "value": value})
    try:
        yield names
    finally:
        for name in names:
            scheduling.delete_priority_class(name)


def test_a_kueue_preemption_counts_as_a_preemption_and_the_next_attempt_resumes(
    queues: Queues, priorities: tuple[str, str]
) -> None:
    low, high = priorities
    queues.make(1, 0, preemption={"withinClusterQueue": "LowerPriority"})
    victim = TrainingJobBuilder("victim").spot().runs_for("10m").reports("/checkpoints/step-7", 7)
    queues.create(victim, priority=low)
    queues.wait("victim", "Running", lambda s: s.get("phase") == "Running")
    queues.running_pod("victim", 1)

    queues.create(TrainingJobBuilder("urgent").spot().runs_for("10m"), priority=high)
    obj = queues.wait(
        "victim",
        "preempted by Kueue and queued again",
        lambda s: (
            s.get("preemptions") == 1 and s.get("attempt") == 2 and s.get("phase") == "Queued"
        ),
    )
    status = obj["status"]
    assert (status["restarts"], status["retryableRestarts"]) == (0, 0)
    assert status["lastCheckpoint"]["step"] == 7
    queues.wait("urgent", "Running", lambda s: s.get("phase") == "Running")
    preempted = next(e for e in queues.events("victim") if e.reason == "Preempted")
    assert "attempt 1 was preempted by Kueue (Preempted: " in preempted.message
    second = queues.job("victim-2")
    assert second.spec.suspend is True
    env = {e.name: e.value for e in second.spec.template.spec.containers[0].env if e.value}
    assert env["STRATUS_RESUME_FROM"] == "/checkpoints/step-7"
    wait_for(
        "attempt 1's Job deleted",
        lambda: queues._job("victim-1") is None,
    )

    queues.delete_trainingjob("urgent")
    queues.wait("victim", "attempt 2 Running", lambda s: s.get("phase") == "Running")
    assert queues.get("victim")["status"]["preemptions"] == 1
    assert "Resumed" in {e.reason for e in queues.events("victim")}


def test_spot_quota_exhausted_the_attempt_runs_on_the_on_demand_flavor(queues: Queues) -> None:
    queues.make(spot_gpus=1, on_demand_gpus=1)
    queues.create(TrainingJobBuilder("on-spot").spot().runs_for("10m"))
    queues.wait("on-spot", "Running", lambda s: s.get("phase") == "Running")
    queues.create(TrainingJobBuilder("spills").spot().runs_for("10m"))
    queues.wait("spills", "Running", lambda s: s.get("phase") == "Running")
    assert queues.job("on-spot-1").spec.template.spec.node_selector[SPOT] == "spot"
    job = queues.job("spills-1")
    assert job.spec.template.spec.node_selector[SPOT] == "on-demand"
    # Its capacity type is the flavor's: nothing on the Job said it before Kueue chose.
    assert "stratus.dev/capacity-type" not in (job.metadata.labels or {})
    pod = queues.running_pod("spills", 1)
    assert queues.node_capacity(pod.spec.node_name) == "on-demand"
    admitted = wait_for(
        "the Admitted Event",
        lambda: next((e for e in queues.events("spills") if e.reason == "Admitted"), None),
    )
    assert admitted.message.endswith("on on-demand capacity")


def test_the_queues_of_stratus_dev_up_kueue_admit_a_trainingjob(queues: Queues) -> None:
    """The ClusterQueue and LocalQueue `stratus dev up --kueue` makes (here in the test's
    namespace), over the default pools."""
    *flavors, cluster_queue, local_queue = kueue.default_queues(nodepools.DEFAULT_POOLS)
    assert [f["metadata"]["name"] for f in flavors] == [kueue.SPOT_FLAVOR, kueue.ON_DEMAND_FLAVOR]
    queues.cluster_queue = cluster_queue["metadata"]["name"]
    local_queue["metadata"]["namespace"] = queues.ns
    kubeapi.connect(queues.cluster.kubeconfig).create_custom([cluster_queue, local_queue])
    obj = TrainingJobBuilder("dev").spot().runs_for("10m").build()
    obj["spec"]["queueName"] = local_queue["metadata"]["name"]
    queues.custom.create_namespaced_custom_object(GROUP, VERSION, queues.ns, "trainingjobs", obj)
    queues.wait("dev", "Running", lambda s: s.get("phase") == "Running")
    pod = queues.running_pod("dev", 1)
    assert queues.node_capacity(pod.spec.node_name) == "spot"
