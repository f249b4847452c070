"""Real containers on the real node (a kubelet and containerd on this machine): how long a
TrainingJob takes to get its training loop running, and to get it running again after a spot
reclaim, beside a plain Job with the same pod created directly (the limit: the Job controller,
the scheduler and the kubelet, without Stratus in between)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from bench.benchmarks import FirstSeen, Result, quantiles
from bench.harness import World, namespace, wait
from stratus.api.trainingjob import KIND, TrainingJobSpec
from stratus.config import OperatorConfig
from stratus.devcluster import kubeapi
from stratus.devcluster.nodepools import GPU_PRODUCT_LABEL
from stratus.podspec import Owner
from stratus.training import builders
from stratus.training.labels import TRAININGJOB_LABEL

NAMESPACE = "bench-real"
IMAGE = "localhost/stratus/train-example:dev"
# The image runs as nobody: the checkpoint directory on the host must be writable by anyone.
CHECKPOINT_MODE = 0o777
# A step every 50 ms and a checkpoint every 4 steps: the first checkpoint lands 0.2 s after the
# loop starts (on both sides alike), and the loop outlives the benchmark by far.
ARGS = [
    "--steps",
    "1000000",
    "--save-every",
    "4",
    "--step-seconds",
    "0.05",
    "--out",
    "/checkpoints/weights.json",
]
# The program saves and exits at SIGTERM; the grace period only bounds a stuck one.
GRACE_SECONDS = 10
RESUMED = "resuming from"
PLAIN_LABEL = "bench.stratus.dev/plain-job"
# Bounds, in seconds.
START_TIMEOUT = 180.0
RECOVERY_TIMEOUT = 240.0
GONE_TIMEOUT = 120.0
MEASURES = (
    "create_to_running_seconds",
    "create_to_first_checkpoint_seconds",
    "reclaim_to_running_seconds",
    "reclaim_to_resumed_seconds",
)


def training_spec(claim: str, gpu_type: str) -> dict[str, Any]:
    """The example program with a checkpoint claim, one GPU of the real node's type, on spot."""
    return {
        "image": IMAGE,
        "args": list(ARGS),
        "resources": {"gpu": 1, "gpuType": gpu_type},
        "spot": {"enabled": True, "maxPreemptions": 5},
        "checkpoint": {"persistentVolumeClaim": claim},
        "terminationGracePeriodSeconds": GRACE_SECONDS,
    }


def plain_job(name: str, ns: str, spec: dict[str, Any]) -> dict[str, Any]:
    """A plain Job with exactly the pod Stratus would run for `spec`'s first attempt (built by
    the operator's own builder), no owner, and a pod failure policy that has the Job controller
    replace a disrupted pod instead of failing the Job."""
    settings = OperatorConfig()
    job = builders.build_job(
        Owner(KIND, name, ns, "none"),
        TrainingJobSpec.model_validate(spec),
        builders.AttemptPlan(number=1, resume_from=None, on_spot=True),
        settings.spot,
        settings.master_port,
    )
    labels = {PLAIN_LABEL: name}
    job["metadata"] = {"name": name, "namespace": ns, "labels": labels}
    job["spec"]["template"]["metadata"]["labels"] = labels
    job["spec"]["podFailurePolicy"]["rules"][0]["action"] = "Ignore"
    return job


@dataclass
class Claim:
    """A hostPath PersistentVolume on a fresh directory, bound to its claim by claimRef."""

    name: str
    volume: str
    directory: Path

    def checkpointed(self) -> bool:
        with contextlib.suppress(OSError):
            return any(entry.name.startswith("step-") for entry in os.scandir(self.directory))
        return False


class RealNodeBench:
    def __init__(self, world: World, node: str, root: Path) -> None:
        self.core = client.CoreV1Api(world.api)
        self.custom = client.CustomObjectsApi(world.api)
        self.batch = client.BatchV1Api(world.api)
        self.nodes = kubeapi.connect(world.cluster.kubeconfig)
        self.node = node
        self.root = root
        self.gpu_type = self.core.read_node(node).metadata.labels[GPU_PRODUCT_LABEL]
        self.ns = namespace(world, NAMESPACE)
        # When each pod's container first ran, from one watch on the namespace.
        self.running = FirstSeen(
            self.core.list_namespaced_pod,
            self.ns,
            when=lambda pod: any(
                s.state and s.state.running for s in pod.status.container_statuses or []
            ),
        )

    def stop(self) -> None:
        self.running.stop()

    # -- the pieces ----------------------------------------------------------------------------
    def claim(self, name: str) -> Claim:
        directory = self.root / name
        directory.mkdir()
        directory.chmod(CHECKPOINT_MODE)
        claim = Claim(f"ckpt-{name}", f"{self.ns}-{name}", directory)
        kubeapi.bind_host_directory(self.core, self.ns, claim.name, claim.volume, directory)
        wait(
            f"claim {claim.name} bound",
            lambda: (
                self.core.read_namespaced_persistent_volume_claim(claim.name, self.ns).status.phase
                == "Bound"
            ),
            timeout=60,
            interval=0.2,
        )
        return claim

    def release(self, claim: Claim, selector: str) -> None:
        """Once the pods of `selector` are gone: the claim, its volume and its directory."""
        wait(
            f"the pods of {selector} gone",
            lambda: not self.core.list_namespaced_pod(self.ns, label_selector=selector).items,
            timeout=GONE_TIMEOUT,
            interval=0.5,
        )
        self.core.delete_namespaced_persistent_volume_claim(claim.name, self.ns)
        self.core.delete_persistent_volume(claim.volume)
        shutil.rmtree(claim.directory, ignore_errors=True)

    def pod_running(self, prefix: str, exclude: str = "", timeout: float = START_TIMEOUT) -> str:
        """Waits (on the watch) until a pod named `prefix...`, other than `exclude`, runs."""

        def found() -> str | None:
            return next(
                (n for n in list(self.running.seen) if n.startswith(prefix) and n != exclude),
                None,
            )

        wait(f"a pod {prefix}* running", lambda: found() is not None, timeout, interval=0.02)
        name = found()
        assert name is not None
        pod = self.core.read_namespaced_pod(name, self.ns)
        if pod.spec.node_name != self.node:
            raise RuntimeError(f"pod {name} ran on {pod.spec.node_name}, not on {self.node}")
        return name

    def log_shows(self, pod: str, needle: str, timeout: float) -> float:
        """When the pod's log first shows `needle`, followed as a stream (not polled)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            stream = watch.Watch()
            lines = stream.stream(
                self.core.read_namespaced_pod_log,
                name=pod,
                namespace=self.ns,
                follow=True,
                _request_timeout=(5, left),
            )
            try:
                for line in lines:
                    if needle in line:
                        return time.monotonic()
            except (ApiException, HTTPError):
                pass  # not started yet, or the read timed out
            finally:
                stream.stop()
                lines.close()
            time.sleep(0.1)
        raise TimeoutError(f"timed out waiting for {needle!r} in the log of {pod}")

    def state(self) -> str:
        """The node, the pods and any TrainingJob of the namespace, in one line."""
        node = self.core.read_node(self.node)
        taints = [f"{t.key}:{t.effect}" for t in node.spec.taints or []]
        parts = [f"node {self.node} taints {taints} unschedulable={node.spec.unschedulable}"]
        for pod in self.core.list_namespaced_pod(self.ns).items:
            states = [
                next(k for k, v in (s.state.to_dict() or {}).items() if v) if s.state else "?"
                for s in pod.status.container_statuses or []
            ]
            deleting = " deleting" if pod.metadata.deletion_timestamp else ""
            parts.append(
                f"pod {pod.metadata.name} {pod.status.phase}{deleting} on {pod.spec.node_name} "
                f"containers {states}"
            )
        jobs = self.custom.list_namespaced_custom_object(
            "stratus.dev", "v1alpha1", self.ns, "trainingjobs"
        )
        for tj in jobs.get("items", []):
            status = tj.get("status") or {}
            parts.append(
                f"trainingjob {tj['metadata']['name']} {status.get('phase')} attempt "
                f"{status.get('attempt')}: {status.get('message')}"
            )
        return "; ".join(parts)

    def reclaim(self) -> threading.Thread:
        """The spot reclaim of the real node, in the background: NoExecute taint, its pods
        evicted, the taint removed once they are gone (the machine comes back as capacity)."""
        reclaim = threading.Thread(
            target=self.nodes.preempt,
            args=(self.node,),
            kwargs={"replace": True, "drain_timeout": GONE_TIMEOUT},
            daemon=True,
        )
        reclaim.start()
        return reclaim

    # -- one sample of each ----------------------------------------------------------------------
    def sample(
        self,
        name: str,
        create: Callable[[str], None],
        first_prefix: str,
        next_prefix: Callable[[str], tuple[str, str]],
        selector: str,
        delete: Callable[[], None],
    ) -> dict[str, float]:
        """Create, time the start; reclaim the node, time the next run; clean up."""
        claim = self.claim(name)
        try:
            start = time.monotonic()
            create(claim.name)
            first = self.pod_running(first_prefix)
            running = self.running.seen[first] - start
            wait("the first checkpoint", claim.checkpointed, START_TIMEOUT, interval=0.02)
            checkpoint = time.monotonic() - start

            start = time.monotonic()
            reclaim = self.reclaim()
            prefix, exclude = next_prefix(first)
            try:
                after = self.pod_running(prefix, exclude, RECOVERY_TIMEOUT)
            except TimeoutError as exc:
                # A rare CI failure here left nothing to read: say what the cluster showed.
                try:
                    seen = self.state()
                except ApiException as unread:
                    seen = f"(the state could not be read: {unread.reason})"
                raise TimeoutError(f"{exc}; {seen}") from exc
            rerunning = self.running.seen[after] - start
            resumed = self.log_shows(after, RESUMED, RECOVERY_TIMEOUT) - start
            reclaim.join(GONE_TIMEOUT)
            if reclaim.is_alive():
                raise TimeoutError(f"the reclaim of {self.node} did not end")
        finally:
            delete()
            self.release(claim, selector)
        return dict(zip(MEASURES, (running, checkpoint, rerunning, resumed), strict=True))

    def stratus(self, name: str) -> dict[str, float]:
        def create(claim: str) -> None:
            self.custom.create_namespaced_custom_object(
                "stratus.dev",
                "v1alpha1",
                self.ns,
                "trainingjobs",
                {
                    "apiVersion": "stratus.dev/v1alpha1",
                    "kind": KIND,
                    "metadata": {"name": name},
                    "spec": training_spec(claim, self.gpu_type),
                },
            )

        def delete() -> None:
            with contextlib.suppress(ApiException):
                self.custom.delete_namespaced_custom_object(
                    "stratus.dev", "v1alpha1", self.ns, "trainingjobs", name
                )

        # Attempt n runs as Job <name>-<n>, whose pod is <name>-<n>-<index>-<suffix>.
        return self.sample(
            name,
            create,
            f"{name}-1-",
            lambda _first: (f"{name}-2-", ""),
            f"{TRAININGJOB_LABEL}={name}",
            delete,
        )

    def plain(self, name: str) -> dict[str, float]:
        def create(claim: str) -> None:
            spec = training_spec(claim, self.gpu_type)
            self.batch.create_namespaced_job(self.ns, plain_job(name, self.ns, spec))

        def delete() -> None:
            with contextlib.suppress(ApiException):
                self.batch.delete_namespaced_job(name, self.ns, propagation_policy="Background")

        # The Job controller's replacement is another pod of the same Job.
        return self.sample(
            name,
            create,
            f"{name}-",
            lambda first: (f"{name}-", first),
            f"{PLAIN_LABEL}={name}",
            delete,
        )


def real_node(world: World, samples: int) -> Result:
    """`samples` TrainingJobs and as many plain Jobs, one at a time and alternating, each
    timed from its creation to its container running and to its first checkpoint, then from
    the reclaim of the node to the next container running and to its log saying it resumed."""
    if world.real_node is None:
        return {"measured": False, "reason": world.no_real_node}
    root = Path(tempfile.mkdtemp(prefix="stratus-bench-checkpoints-"))
    bench = RealNodeBench(world, world.real_node, root)
    results: dict[str, list[dict[str, float]]] = {"stratus": [], "plain_job": []}
    try:
        # Untimed: the first container on the node pays for cold caches.
        bench.plain("warmup")
        for i in range(samples):
            order = [("stratus", bench.stratus), ("plain_job", bench.plain)]
            for side, run in order if i % 2 == 0 else order[::-1]:
                results[side].append(run(f"{'tj' if side == 'stratus' else 'job'}-{i}"))
    finally:
        bench.stop()
        shutil.rmtree(root, ignore_errors=True)
    report: Result = {
        "measured": True,
        "node": world.real_node,
        "image": IMAGE,
        "samples": samples,
    }
    for measure in MEASURES:
        stratus = quantiles([r[measure] for r in results["stratus"]])
        plain = quantiles([r[measure] for r in results["plain_job"]])
        report[measure] = {
            "stratus": stratus,
            "plain_job": plain,
            "ratio_p50": round(stratus["p50"] / plain["p50"], 3) if plain.get("p50") else None,
            "ratio_p95": round(stratus["p95"] / plain["p95"], 3) if plain.get("p95") else None,
        }
    return report
