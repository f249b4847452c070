"""Every example that `make dev` applies (examples/*.yaml), applied the way it applies them
(`stratus dev simulate FILE | kubectl apply -f -`: every document, workloads onto the simulated
GPU pools) into a namespace of the test cluster, reaches the end written at the file's top."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from stratus.api.common import GROUP, VERSION
from stratus.devcluster import nodepools, objectstore
from tests.conftest import Cluster, OperatorProcess, kubectl
from tests.support import wait_for

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
Status = dict[str, Any]


def succeeded(status: Status) -> bool:
    return status.get("phase") == "Succeeded"


def healthy_with_two_ready(status: Status) -> bool:
    return (
        status.get("phase") == "Healthy"
        and bool(status.get("stableRevision"))
        and status.get("readyReplicas") == 2
    )


# Each example's resource and its documented end (the file's `# End:` line).
ENDS: dict[str, tuple[str, str, Callable[[Status], bool]]] = {
    "trainingjob-spot.yaml": ("trainingjobs", "llama-finetune-spot", succeeded),
    "trainingjob-distributed.yaml": ("trainingjobs", "gpt-pretrain-4x8", succeeded),
    "inferenceservice-canary.yaml": ("inferenceservices", "sentiment", healthy_with_two_ready),
}


def test_every_example_that_make_dev_applies_has_its_end_here() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.yaml")) == sorted(ENDS)


def copy_store_secret(core: client.CoreV1Api, namespace: str) -> None:
    """The Secret `make dev` gives the examples in `default`, where a local cluster has one."""
    try:
        secret = core.read_namespaced_secret(objectstore.SECRET_NAME, objectstore.SECRET_NAMESPACE)
    except ApiException as exc:
        if exc.status == 404:
            return
        raise
    data = {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}
    core.create_namespaced_secret(
        namespace, {"metadata": {"name": objectstore.SECRET_NAME}, "stringData": data}
    )


@pytest.mark.parametrize("example", sorted(ENDS))
def test_the_example_reaches_its_documented_end(
    cluster: Cluster,
    operator: OperatorProcess,
    namespace: str,
    example: str,
    tmp_path: Path,
) -> None:
    source = (EXAMPLES / example).read_text()
    assert "\n# End: " in "\n" + source.split("\napiVersion:", 1)[0], "document the end at the top"
    docs = [nodepools.simulated(d) for d in yaml.safe_load_all(source) if d]
    simulated = tmp_path / example
    simulated.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    core = client.CoreV1Api(cluster.api)
    copy_store_secret(core, namespace)
    plural, name, reached = ENDS[example]
    custom = client.CustomObjectsApi(cluster.api)

    def at_the_end() -> Status | None:
        obj = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
        now = dict(obj.get("status") or {})
        return now if reached(now) else None

    kubectl(cluster, "apply", "--namespace", namespace, "-f", str(simulated))
    try:
        # A TrainingJob's pods are refused without their PriorityClass and stay unscheduled
        # without their bound claim: the end proves the file ships what it needs.
        final = wait_for(f"{example} to reach its documented end", at_the_end, timeout=180)
        if plural == "trainingjobs":
            assert final["attempt"] == 1, final
        for doc in docs:
            if doc["kind"] == "PersistentVolumeClaim":
                claim = core.read_namespaced_persistent_volume_claim(
                    doc["metadata"]["name"], namespace
                )
                assert claim.status.phase == "Bound"
    finally:
        # The namespace goes afterwards; this also removes what is cluster-scoped (PriorityClass).
        kubectl(
            cluster,
            "delete",
            "--namespace",
            namespace,
            "--ignore-not-found",
            "--wait=false",
            "-f",
            str(simulated),
        )
