"""The peer, side by side: the Kubeflow training operator (built from its Go module by
`make peer`) on the same local control plane, against PyTorchJobs equivalent to the
TrainingJobs of the throughput benchmark."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client

from bench.benchmarks import (
    CLIENT_THREADS,
    RUNS_THROUGH,
    FirstSeen,
    Result,
    process_usage,
    quantiles,
    settle,
    simulated,
)
from bench.harness import World, answers, free_port, namespace, wait
from stratus.devcluster import binaries

BINARY = "training-operator.v1"
CRD = "pytorchjobs-crd.yaml"
# Its namespace, for the webhook certificate Secret its certificate rotator insists on.
SYSTEM_NAMESPACE = "bench-peer-system"
# Where it reads its webhook serving pair, fixed in its code (pkg/cert): a volume mount in a
# real install. No webhook configuration is installed, so the API server never calls it.
CERT_DIR = Path("/tmp/k8s-webhook-server/serving-certs")  # noqa: S108 (theirs, not ours)


@dataclass(frozen=True)
class Peer:
    version: str
    binary: Path
    crd: Path


def locate() -> Peer:
    """The built peer; raises with the build command when it is missing."""
    version = binaries.versions()["TRAINING_OPERATOR_VERSION"]
    folder = binaries.cache_dir() / "bin" / f"training-operator-{version}"
    peer = Peer(version, folder / BINARY, folder / CRD)
    if not (os.access(peer.binary, os.X_OK) and peer.crd.is_file()):
        raise binaries.MissingBinariesError(
            f"the training operator is not built in {folder}. "
            "Run `make peer` (hack/build-binaries.sh peer) first."
        )
    return peer


def pytorchjob(name: str) -> dict[str, Any]:
    """The PyTorchJob equivalent of the throughput benchmark's TrainingJob: one replica, no
    GPU, the same image, simulated duration, grace period and placement on kwok's nodes."""
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": name},
        "spec": {
            "pytorchReplicaSpecs": {
                "Master": {
                    "replicas": 1,
                    "restartPolicy": "OnFailure",
                    "template": {
                        "metadata": {"annotations": {"stratus.dev/sim-duration": RUNS_THROUGH}},
                        "spec": simulated(
                            terminationGracePeriodSeconds=5,
                            containers=[{"name": "pytorch", "image": "bench:1"}],
                        ),
                    },
                }
            }
        },
    }


# Run as its Deployment in manifests/base runs it (one worker thread, the client's default rate
# limits), then with as many worker threads as Stratus has.
VARIANTS: dict[str, tuple[str, ...]] = {
    "as_shipped": (),
    "controller_threads_16": ("--controller-threads=16",),
}


def training_operator(world: World, count: int, stratus: Result) -> Result:
    """`count` PyTorchJobs created at once, as the throughput benchmark creates TrainingJobs:
    time until every one has its pod, beside Stratus's time until every TrainingJob has its
    Job (from the throughput result of the same run)."""
    peer = locate()
    _install(world, peer)
    result: Result = {
        "measured": True,
        "peer": f"github.com/kubeflow/training-operator {peer.version}",
        "count": count,
        "stratus_all_jobs_seconds": stratus["stratus_seconds"],
        "stratus_all_pods_seconds": stratus["stratus_breakdown_seconds"]["pods_created"],
    }
    for variant, flags in VARIANTS.items():
        result[variant] = _run(world, peer, variant, flags, count, stratus["stratus_seconds"])
    return result


def _install(world: World, peer: Peer) -> None:
    """Its CRD, and what its webhook certificate rotator waits for before any controller runs:
    a Secret to write to, and the serving pair at the path a volume would mount."""
    world.kubectl("apply", "--server-side", "-f", str(peer.crd))
    crds = client.ApiextensionsV1Api(world.api)

    def established() -> bool:
        crd = crds.read_custom_resource_definition("pytorchjobs.kubeflow.org")
        return any(
            c.type == "Established" and c.status == "True" for c in crd.status.conditions or []
        )

    wait("the PyTorchJob CRD", established)
    namespace(world, SYSTEM_NAMESPACE)
    client.CoreV1Api(world.api).create_namespaced_secret(
        SYSTEM_NAMESPACE, {"metadata": {"name": "training-operator-webhook-cert"}}
    )
    CERT_DIR.mkdir(parents=True, exist_ok=True)
    for ours, theirs in (("crt", "tls.crt"), ("key", "tls.key")):
        shutil.copyfile(world.cluster.layout.pki_dir / f"apiserver.{ours}", CERT_DIR / theirs)


def _run(
    world: World, peer: Peer, variant: str, flags: tuple[str, ...], count: int, stratus: float
) -> Result:
    probe = free_port()
    log = world.operator_log.with_name(f"training-operator-{variant}.log")
    ns = namespace(world, f"bench-peer-{variant.replace('_', '-')}")
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                str(peer.binary),
                "--enable-scheme=pytorchjob",
                "--metrics-bind-address=0",
                f"--health-probe-bind-address=127.0.0.1:{probe}",
                f"--webhook-server-port={free_port()}",
                # Its own namespace only, so that one run does not inherit the PyTorchJobs of
                # the one before. Stratus watches every namespace.
                f"--namespace={ns}",
                *flags,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={
                **os.environ,
                "KUBECONFIG": str(world.cluster.kubeconfig),
                "MY_POD_NAMESPACE": SYSTEM_NAMESPACE,
            },
        )
    try:
        wait(
            "the training operator",
            lambda: answers(probe, "/readyz"),
            timeout=120,
        )
        return _burst(world, ns, count, stratus, process)
    finally:
        process.terminate()
        process.wait(timeout=30)


def _burst(
    world: World, ns: str, count: int, stratus: float, process: subprocess.Popen[bytes]
) -> Result:
    custom = client.CustomObjectsApi(world.api)
    core = client.CoreV1Api(world.api)

    def create(name: str) -> None:
        custom.create_namespaced_custom_object(
            "kubeflow.org", "v1", ns, "pytorchjobs", pytorchjob(name)
        )

    # One first, so that its controllers are known to be running before the clock starts.
    create("warmup")
    wait("the warm-up PyTorchJob's pod", lambda: core.list_namespaced_pod(ns).items, 120)

    pods = FirstSeen(
        core.list_namespaced_pod, ns, when=lambda pod: pod.metadata.name.startswith("pt-")
    )
    created: dict[str, float] = {}
    _, cpu_before = process_usage(process.pid)

    def create_one(i: int) -> None:
        created[f"pt-{i}-master-0"] = time.monotonic()
        create(f"pt-{i}")

    start = time.monotonic()
    with ThreadPoolExecutor(CLIENT_THREADS) as pool:
        list(pool.map(create_one, range(count)))
    wait("every PyTorchJob's pod", lambda: len(pods.seen) >= count, timeout=900)
    seconds = max(pods.seen.values()) - start
    pods.stop()
    resident, cpu_after = process_usage(process.pid)
    settle(world, ns, count + 1)
    latencies = [pods.seen[name] - at for name, at in created.items() if name in pods.seen]
    return {
        "all_pods_seconds": round(seconds, 3),
        "ratio_stratus_to_peer": round(stratus / seconds, 3),
        "create_to_pod_seconds": quantiles(latencies),
        "cpu_seconds": round(cpu_after - cpu_before, 2),
        "resident_mib": round(resident, 1),
    }
