"""Two operator replicas with kopf peering: exactly one acts, and the other takes over when the
first is killed."""

from __future__ import annotations

from pathlib import Path

from kubernetes import client

from stratus.api.common import GROUP, VERSION
from tests.builders import TrainingJobBuilder
from tests.conftest import Cluster, OperatorProcess
from tests.support import wait_for

PEERING = "stratus-ha-test"


def succeeded(custom: client.CustomObjectsApi, namespace: str, name: str) -> bool:
    obj = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "trainingjobs", name)
    return bool(obj.get("status", {}).get("phase") == "Succeeded")


def test_one_replica_acts_and_the_other_takes_over(
    cluster: Cluster,
    crds: list[str],
    operator: OperatorProcess,
    namespace: str,
    tmp_path: Path,
) -> None:
    custom = client.CustomObjectsApi(cluster.api)
    custom.create_cluster_custom_object(
        "kopf.dev",
        "v1",
        "clusterkopfpeerings",
        {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": PEERING}},
    )
    # A lifetime long enough that a busy machine's late keep-alive does not read as a dead peer
    # (then both replicas would act), short enough for a quick takeover. Priorities are set, so
    # that the first replica acts alone, then gives way to the second as it joins: both say so.
    env = {"STRATUS_PEERING": PEERING, "STRATUS_PEERING_LIFETIME": "20"}
    replicas = [
        OperatorProcess(
            cluster.kubeconfig,
            tmp_path,
            {**env, "STRATUS_PEERING_PRIORITY": str(100 * i)},
            name=f"replica-{i}",
        )
        for i in (1, 2)
    ]
    operator.stop()
    try:
        first, second = replicas
        first.start()
        wait_for("the first replica to act", lambda: "Resuming operations" in first.log.read_text())
        second.start()
        wait_for(
            "the first replica to give way",
            lambda: "Pausing operations" in first.log.read_text(),
            timeout=90,
        )
        wait_for("the second to act", lambda: "Resuming operations" in second.log.read_text())

        custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            "trainingjobs",
            TrainingJobBuilder("ha-1").runs_for("200ms").build(),
        )
        wait_for("ha-1 to succeed", lambda: succeeded(custom, namespace, "ha-1"))
        assert f"{namespace}/ha-1: AttemptStarted" in second.log.read_text()
        assert "ha-1" not in first.log.read_text()

        second.kill()
        custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            "trainingjobs",
            TrainingJobBuilder("ha-2").runs_for("200ms").build(),
        )
        wait_for(
            "ha-2 to succeed under the other replica",
            lambda: succeeded(custom, namespace, "ha-2"),
            timeout=90,
        )
        assert f"{namespace}/ha-2: AttemptStarted" in first.log.read_text()
    finally:
        for replica in replicas:
            replica.stop()
        custom.delete_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", PEERING)
        operator.start()
