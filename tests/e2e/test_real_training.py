"""Spot preemption of a real training run: the example program (examples/train, with
stratus.sdk) runs in a container on the real node, the node is reclaimed mid-run, the container
gets a real SIGTERM and saves, and the next attempt resumes from that step and finishes with
exactly the weights of an uninterrupted run."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from stratus.api.common import GROUP, VERSION
from stratus.cli import main as stratus_main
from stratus.devcluster import kubeapi, objectstore
from tests.cases import TJ, example
from tests.conftest import Cluster
from tests.e2e.test_objectstore_dev import local_store
from tests.support import needs_real_node, wait_for

pytestmark = pytest.mark.usefixtures("operator")
TRAIN_IMAGE = "localhost/stratus/train-example:dev"
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "train" / "train.py"
STEPS = 4000


def uninterrupted_weights(steps: int) -> list[float]:
    spec = importlib.util.spec_from_file_location("train_example", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    weights = [0.0, 0.0]
    for step in range(1, steps + 1):
        weights = module.train_step(weights, step)
    return weights


def checkpoint_volume(core: client.CoreV1Api, namespace: str, directory: Path) -> str:
    """A claim bound to a directory of the real node, as an admin provisions one by hand."""
    directory.mkdir()
    directory.chmod(0o777)  # the example runs as nobody
    name = f"{namespace}-ckpt"
    kubeapi.bind_host_directory(core, namespace, "ckpt", name, directory)
    return name


def saved_steps(directory: Path) -> list[int]:
    return sorted(int(p.name.split("-")[-1]) for p in directory.glob("step-*") if p.is_dir())


def test_a_spot_run_preempted_on_the_real_node_resumes_where_it_saved(
    cluster: Cluster, namespace: str, real_node: str, tmp_path: Path
) -> None:
    if cluster.state_dir is None:
        needs_real_node(
            "the checkpoint volume is a directory of this machine: local real node only"
        )
    core = client.CoreV1Api(cluster.api)
    custom = client.CustomObjectsApi(cluster.api)
    ckpt = tmp_path / "checkpoints"
    volume = checkpoint_volume(core, namespace, ckpt)
    try:
        custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            "trainingjobs",
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "TrainingJob",
                "metadata": {"name": "real"},
                "spec": {
                    "image": TRAIN_IMAGE,
                    "args": [
                        f"--steps={STEPS}",
                        "--save-every=500",
                        "--step-seconds=0.004",
                        "--out=/checkpoints/weights.json",
                    ],
                    "resources": {"gpu": 1, "gpuType": "NVIDIA-L4", "cpu": "100m"},
                    "spot": {"enabled": True, "maxPreemptions": 3},
                    "checkpoint": {"persistentVolumeClaim": "ckpt"},
                    "terminationGracePeriodSeconds": 20,
                },
            },
        )

        def status() -> dict[str, Any]:
            obj = custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, "trainingjobs", "real"
            )
            return dict(obj.get("status") or {})

        # Mid-run: past the first periodic save, well before the end.
        wait_for("a periodic checkpoint", lambda: saved_steps(ckpt), timeout=120)
        pods = core.list_namespaced_pod(namespace).items
        assert [p.spec.node_name for p in pods] == [real_node]
        assert (
            stratus_main(
                ["dev", "preempt", real_node, "--replace", "--kubeconfig", str(cluster.kubeconfig)]
            )
            == 0
        )

        def finished() -> dict[str, Any] | None:
            now = status()
            return now if now.get("phase") in ("Succeeded", "Failed") else None

        done = wait_for("the run to finish after the preemption", finished, timeout=240)
        assert done["phase"] == "Succeeded", done
        assert done["preemptions"] == 1
        assert done["attempt"] == 2
        # The SIGTERM save is the step the second attempt resumed from: nothing was lost.
        second = next(
            p
            for p in core.list_namespaced_pod(namespace).items
            if p.metadata.name.startswith("real-2")
        )
        log = core.read_namespaced_pod_log(second.metadata.name, namespace)
        resumed = int(re.search(r"resuming from \S+ \(step (\d+)\)", log).group(1))  # type: ignore[union-attr]
        assert resumed % 500 != 0, "resumed from a periodic save: the SIGTERM save was lost"
        assert 0 < resumed < STEPS
        assert json.loads((ckpt / "weights.json").read_text()) == uninterrupted_weights(STEPS)
    finally:
        custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "trainingjobs", "real")
        core.delete_persistent_volume(volume)


def test_the_spot_example_preempted_on_the_real_node_resumes_from_the_bucket(
    cluster: Cluster, namespace: str, real_node: str
) -> None:
    """examples/trainingjob-spot.yaml as written (its bucket, its Secret), with the example
    program in place of its model: the attempt's local checkpoints die with the reclaimed node,
    and the next attempt resumes from what the SDK uploaded, the SIGTERM save included."""
    store = local_store(cluster)
    core = client.CoreV1Api(cluster.api)
    custom = client.CustomObjectsApi(cluster.api)
    # What `make dev` gives the default namespace, in the test's own.
    secret = core.read_namespaced_secret(objectstore.SECRET_NAME, objectstore.SECRET_NAMESPACE)
    core.create_namespaced_secret(
        namespace, {"metadata": {"name": objectstore.SECRET_NAME}, "data": secret.data}
    )
    job = example(TJ)
    bucket, _, prefix = job["spec"]["checkpoint"]["uri"].removeprefix("s3://").partition("/")
    prefix = f"{prefix}-{namespace}"  # the bucket outlives a test namespace
    job["spec"]["checkpoint"]["uri"] = f"s3://{bucket}/{prefix}"
    del job["spec"]["command"]
    job["spec"].update(
        image=TRAIN_IMAGE,
        args=[f"--steps={STEPS}", "--save-every=500", "--step-seconds=0.004", "--out=/tmp/w.json"],
        resources={"gpu": 1, "gpuType": "NVIDIA-L4", "cpu": "100m"},
        terminationGracePeriodSeconds=30,
    )
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "trainingjobs", job)
    name = job["metadata"]["name"]
    s3 = objectstore.client(store)

    def uploaded() -> list[str]:
        listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/manifests/")
        return [o["Key"] for o in listed.get("Contents", [])]

    wait_for("a checkpoint uploaded to the bucket", uploaded, timeout=120)
    pods = core.list_namespaced_pod(namespace).items
    assert [p.spec.node_name for p in pods] == [real_node]
    preempt = ["dev", "preempt", real_node, "--replace", "--kubeconfig", str(cluster.kubeconfig)]
    assert stratus_main(preempt) == 0

    def finished() -> dict[str, Any] | None:
        obj = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "trainingjobs", name)
        now = dict(obj.get("status") or {})
        return now if now.get("phase") in ("Succeeded", "Failed") else None

    done = wait_for("the run to finish after the preemption", finished, timeout=240)
    assert done["phase"] == "Succeeded", done
    assert (done["preemptions"], done["attempt"]) == (1, 2)
    assert done["lastCheckpoint"]["path"].startswith(f"s3://{bucket}/{prefix}/"), done
    second = next(
        p
        for p in core.list_namespaced_pod(namespace).items
        if p.metadata.name.startswith(f"{name}-2")
    )
    log = core.read_namespaced_pod_log(second.metadata.name, namespace)
    resumed = int(re.search(r"resuming from \S+ \(step (\d+)\)", log).group(1))  # type: ignore[union-attr]
    assert resumed % 500 != 0, f"resumed from a periodic save: the SIGTERM save was lost\n{log}"
    assert 0 < resumed < STEPS
    weights = re.search(r"done at step (\d+): weights (\[.*\])", log)
    assert weights is not None, log
    assert (int(weights.group(1)), json.loads(weights.group(2))) == (
        STEPS,
        uninterrupted_weights(STEPS),
    )
