"""Chaos: the operator killed mid-burst, the API server restarted, a spot storm, a rollback that
must survive a restart, and garbage in the cluster. Sized to stay well inside the CI budget."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kubernetes import client

from stratus.api.common import GROUP, VERSION
from stratus.devcluster import kubeapi
from stratus.devcluster.cluster import LocalCluster
from stratus.devcluster.nodepools import NodePool
from tests.builders import TrainingJobBuilder
from tests.conftest import Cluster, OperatorProcess, kubectl
from tests.e2e.test_serving import Serving, service
from tests.e2e.test_serving_analysis import judged, publish, revision
from tests.prometheus import Exporter, Prometheus
from tests.support import api_client, wait_for

Obj = dict[str, Any]


def trainingjobs(api: client.ApiClient, namespace: str) -> list[Obj]:
    items: list[Obj] = client.CustomObjectsApi(api).list_namespaced_custom_object(
        GROUP, VERSION, namespace, "trainingjobs"
    )["items"]
    return items


def create_burst(api: client.ApiClient, namespace: str, count: int, builder: Any = None) -> None:
    custom = client.CustomObjectsApi(api)
    for i in range(count):
        job = (
            builder(i) if builder else TrainingJobBuilder(f"burst-{i}").gpus(0).runs_for("2s")
        ).build()
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "trainingjobs", job)


def all_succeeded(api: client.ApiClient, namespace: str, count: int) -> bool:
    done = [
        t for t in trainingjobs(api, namespace) if t.get("status", {}).get("phase") == "Succeeded"
    ]
    return len(done) == count


def assert_one_job_per_attempt(api: client.ApiClient, namespace: str) -> None:
    seen: set[tuple[str, str]] = set()
    for job in client.BatchV1Api(api).list_namespaced_job(namespace).items:
        labels = job.metadata.labels
        key = (labels["stratus.dev/trainingjob"], labels["stratus.dev/attempt"])
        assert key not in seen, f"two Jobs for {key}"
        seen.add(key)


def test_operator_killed_five_times_during_a_burst(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    count = 200
    creator = threading.Thread(target=create_burst, args=(cluster.api, namespace, count))
    creator.start()
    for _ in range(5):
        time.sleep(1.5)
        operator.kill()
        operator.start()
    creator.join()
    wait_for(
        f"all {count} TrainingJobs Succeeded",
        lambda: all_succeeded(cluster.api, namespace, count),
        timeout=240,
        interval=1,
    )
    for tj in trainingjobs(cluster.api, namespace):
        status = tj["status"]
        assert (status["attempt"], status["preemptions"], status["restarts"]) == (1, 0, 0), (
            tj["metadata"]["name"],
            status,
        )
    assert_one_job_per_attempt(cluster.api, namespace)
    assert len(client.BatchV1Api(cluster.api).list_namespaced_job(namespace).items) == count


@contextlib.contextmanager
def isolated(tmp_path: Path, *pools: NodePool) -> Iterator[tuple[LocalCluster, client.ApiClient]]:
    """A cluster of the test's own (CRDs, operator, namespace `chaos`), which it may break
    without harming the others."""
    local = LocalCluster(tmp_path / "cluster", pools)
    local.up()
    operator = OperatorProcess(local.kubeconfig, tmp_path)
    try:
        api = api_client(local.kubeconfig)
        own = Cluster(local.kubeconfig, api, local.layout.root)
        crd_files = sorted((Path(__file__).resolve().parents[2] / "crds").glob("*.yaml"))
        kubectl(own, "apply", "--server-side", *[f"-f={f}" for f in crd_files])
        kubectl(
            own,
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            *[f"-f={f}" for f in crd_files],
        )
        operator.start()
        core = client.CoreV1Api(api)
        core.create_namespace({"metadata": {"name": "chaos"}})
        wait_for(
            "the namespace's ServiceAccount",
            lambda: core.list_namespaced_service_account("chaos").items,
        )
        yield local, api
        assert operator.proc is not None
        assert operator.proc.poll() is None, "the operator must not crash"
    finally:
        operator.stop()
        local.down()


def test_api_server_restarted_mid_burst(tmp_path: Path) -> None:
    with isolated(tmp_path, NodePool(name="cpu", count=1, cpu="64")) as (own_cluster, api):
        create_burst(api, "chaos", 50)
        own_cluster.restart("kube-apiserver")
        create_burst(
            api, "chaos", 50, lambda i: TrainingJobBuilder(f"after-{i}").gpus(0).runs_for("1s")
        )
        wait_for(
            "all 100 TrainingJobs Succeeded",
            lambda: all_succeeded(api, "chaos", 100),
            timeout=180,
            interval=1,
        )
        assert_one_job_per_attempt(api, "chaos")


def test_a_spot_storm_every_job_resumes_and_preemptions_match(tmp_path: Path) -> None:
    spot = NodePool(name="gpu-spot", count=4, gpus=32, capacity_type="spot")
    with isolated(tmp_path, spot) as (local, api):
        storm_on(local, api, "chaos")


def storm_on(local: LocalCluster, api: client.ApiClient, namespace: str) -> None:
    count = 100
    create_burst(
        api,
        namespace,
        count,
        lambda i: (
            TrainingJobBuilder(f"storm-{i}")
            .spot(max_preemptions=3)
            # Long enough that no pod on a reclaimed node finishes before the taint lands: the
            # window is this less the spread of 100 pods' starts, which a loaded machine
            # stretches to 10-15 s (8s was seen to race).
            .runs_for("40s")
            .reports(f"/checkpoints/storm-{i}", i)
        ),
    )
    core = client.CoreV1Api(api)

    def running() -> list[Any]:
        pods = core.list_namespaced_pod(namespace).items
        return pods if sum(p.status.phase == "Running" for p in pods) == count else []

    pods = wait_for(f"{count} spot pods running", running, timeout=120, interval=0.5)
    nodes = sorted({p.spec.node_name for p in pods})
    reclaimed = nodes[: max(1, len(nodes) // 2)]
    hit = {
        p.metadata.labels["stratus.dev/trainingjob"] for p in pods if p.spec.node_name in reclaimed
    }
    nodes_api = kubeapi.connect(local.kubeconfig)
    storm = [
        threading.Thread(target=nodes_api.preempt, args=(node,), kwargs={"replace": True})
        for node in reclaimed
    ]
    for thread in storm:
        thread.start()
    for thread in storm:
        thread.join()
    wait_for(
        f"all {count} TrainingJobs Succeeded",
        lambda: all_succeeded(api, namespace, count),
        timeout=240,
        interval=1,
    )
    for tj in trainingjobs(api, namespace):
        name, status = tj["metadata"]["name"], tj["status"]
        assert status["preemptions"] == (1 if name in hit else 0), (name, status)
        assert status["attempt"] == 1 + status["preemptions"]
    assert hit
    assert_one_job_per_attempt(api, namespace)


def test_operator_killed_mid_canary_still_rolls_back(
    cluster: Cluster,
    operator: OperatorProcess,
    namespace: str,
    prometheus: Prometheus,
    exporter: Exporter,
) -> None:
    serving = Serving(cluster, namespace)
    obj = judged("doomed", prometheus)
    obj["spec"]["rollout"]["analysis"].update({"failureLimit": 2, "interval": "2s"})
    serving.create(obj)
    stable = serving.wait("doomed", "Healthy", lambda s: s.get("phase") == "Healthy")[
        "stableRevision"
    ]
    canary = revision(obj, "serve:bad")
    publish(exporter, prometheus, canary, error_rate=0.3)
    serving.set_image("doomed", "serve:bad")
    serving.wait(
        "doomed",
        "a first failed measurement",
        lambda s: (s.get("lastAnalysis") or {}).get("failures", 0) >= 1,
    )
    operator.kill()
    operator.start()
    status = serving.wait("doomed", "rolled back", lambda s: s.get("phase") == "Degraded")
    assert (status["stableRevision"], status["abortedRevision"]) == (stable, canary)
    assert status["lastAnalysis"]["failures"] == 3


def test_garbage_is_repaired_or_reported_and_never_crashes_the_operator(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    custom = client.CustomObjectsApi(cluster.api)
    batch = client.BatchV1Api(cluster.api)
    # A TrainingJob whose status claims history the cluster does not have, plus unknown fields.
    custom.create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        "trainingjobs",
        TrainingJobBuilder("odd").gpus(0).runs_for("10m").suspended().build(),
    )
    odd_status = {
        "phase": "Running",
        "attempt": 3,
        "preemptions": 2,
        "restarts": 1,
        "activeJob": "odd-99",
        "somethingElse": {"x": [1, 2]},
    }
    custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, "trainingjobs", "odd", {"status": odd_status}
    )
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "trainingjobs", "odd", {"spec": {"suspend": False}}
    )
    job = wait_for(
        "attempt 3's Job",
        lambda: next(
            (j for j in batch.list_namespaced_job(namespace).items if j.metadata.name == "odd-3"),
            None,
        ),
    )
    status = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "trainingjobs", "odd")[
        "status"
    ]
    assert (status["preemptions"], status["restarts"]) == (2, 1)  # nothing lost or reset

    # An owner reference removed by hand is put back.
    batch.patch_namespaced_job(
        job.metadata.name, namespace, [{"op": "remove", "path": "/metadata/ownerReferences"}]
    )
    wait_for(
        "the owner reference restored",
        lambda: batch.read_namespaced_job(job.metadata.name, namespace).metadata.owner_references,
    )

    # The active attempt's Job deleted by hand: the attempt runs again, uncounted.
    batch.delete_namespaced_job(job.metadata.name, namespace, propagation_policy="Background")
    wait_for(
        "odd-3 recreated",
        lambda: any(
            j.metadata.name == "odd-3" and j.metadata.uid != job.metadata.uid
            for j in batch.list_namespaced_job(namespace).items
        ),
    )

    # An InferenceService Deployment edited by hand is put back to the replicas it should have.
    serving = Serving(cluster, namespace)
    serving.create(service("edited"))
    stable = serving.wait("edited", "Healthy", lambda s: s.get("phase") == "Healthy")[
        "stableRevision"
    ]
    serving.apps.patch_namespaced_deployment(
        f"edited-{stable}", namespace, {"spec": {"replicas": 9}}
    )
    wait_for("replicas repaired", lambda: serving.replicas("edited") == {stable: 4})

    assert operator.proc is not None
    assert operator.proc.poll() is None, "the operator must not crash"
