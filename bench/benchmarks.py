"""The benchmarks. Each measures Stratus and, beside it in the same run on the same cluster, the
limit it is judged against, and returns figures and ratios (never a pass/fail on time)."""

from __future__ import annotations

import itertools
import json
import re
import statistics
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kubernetes import client, watch
from urllib3.exceptions import ProtocolError

from bench.harness import (
    AUDITED_SERVING,
    AUDITED_TRAINING,
    OPERATOR_USER,
    World,
    namespace,
    wait,
)
from stratus import metrics
from stratus.devcluster import kubeapi

Result = dict[str, Any]
SPOT = {
    "key": "karpenter.sh/capacity-type",
    "operator": "Equal",
    "value": "spot",
    "effect": "NoSchedule",
}
# How long a benchmark's workloads run: past the end of the whole run, so that no burst's pods
# finish (and keep the operator busy) while a later benchmark measures.
RUNS_THROUGH = "6h"
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def quantiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    if not ordered:
        return {}

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))], 4)

    return {
        "n": len(ordered),
        "p50": at(0.5),
        "p95": at(0.95),
        "max": round(ordered[-1], 4),
        "mean": round(statistics.fmean(ordered), 4),
    }


def trainingjob(name: str, **spec: Any) -> dict[str, Any]:
    annotations = {"stratus.dev/sim-duration": spec.pop("duration", RUNS_THROUGH)}
    return {
        "apiVersion": "stratus.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": {
            "image": "bench:1",
            "resources": {"gpu": spec.pop("gpu", 0)},
            "terminationGracePeriodSeconds": 5,
            "podTemplate": {"metadata": {"annotations": annotations}},
            **spec,
        },
    }


def inference_service(
    name: str, replicas: int, steps: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """A CPU-only model server (GPU capacity is kept for the preemption benchmark)."""
    spec: dict[str, Any] = {
        "image": "serve:1",
        "model": {"uri": "https://m/x"},
        "resources": {"gpu": 0},
        "replicas": {"min": replicas, "max": replicas},
    }
    if steps is not None:
        spec["rollout"] = {"steps": steps, "analysis": {"interval": "1s"}}
    return {
        "apiVersion": "stratus.dev/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": name},
        "spec": spec,
    }


def plain_job(name: str, **pod: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"annotations": {"stratus.dev/sim-duration": RUNS_THROUGH}},
                "spec": {
                    "restartPolicy": "Never",
                    **pod,
                    "containers": [{"name": "c", "image": "bench:1"}],
                },
            },
        },
    }


class FirstSeen:
    """When each object of a list call first met `when`, by a watch started before the burst
    (a watch, not polling: listing hundreds of objects over and over would load the very API
    server being measured)."""

    def __init__(
        self,
        list_call: Callable[..., Any],
        *args: str,
        when: Callable[[Any], bool] = lambda _obj: True,
    ) -> None:
        self.seen: dict[str, float] = {}
        self._stopped = False
        self._watch = watch.Watch()
        self._thread = threading.Thread(target=self._run, args=(list_call, args, when), daemon=True)
        self._thread.start()
        time.sleep(0.5)

    def _run(
        self, list_call: Callable[..., Any], args: tuple[str, ...], when: Callable[[Any], bool]
    ) -> None:
        # A stream the server ends early is opened again: it starts over with every object, and
        # what was seen before keeps its time.
        while not self._stopped:
            try:
                for event in self._watch.stream(list_call, *args, timeout_seconds=900):
                    # The client yields None for a keep-alive line; errors carry no object.
                    if not event or event["type"] not in ("ADDED", "MODIFIED"):
                        continue
                    obj = event["object"]
                    name = obj["metadata"]["name"] if isinstance(obj, dict) else obj.metadata.name
                    if name not in self.seen and when(obj):
                        self.seen[name] = time.monotonic()
            except ProtocolError:
                continue

    def stop(self) -> None:
        self._stopped = True
        self._watch.stop()


def settle(world: World, ns: str, count: int) -> None:
    """Wait, untimed, until a burst's `count` pods run: the Job controller creates pods well
    after their Jobs, and that backlog must not spill into the next measurement."""
    core = client.CoreV1Api(world.api)
    wait(
        f"{count} pods running in {ns}",
        lambda: (
            sum(p.status.phase == "Running" for p in core.list_namespaced_pod(ns).items) >= count
        ),
        timeout=900,
        interval=1.0,
    )


def _direct_jobs(world: World, count: int, name: str) -> float:
    """The physical limit: `count` Jobs created by a tight loop of 8 client threads; seconds
    until the last one is seen."""
    batch = client.BatchV1Api(world.api)
    ns = namespace(world, name)
    watcher = FirstSeen(batch.list_namespaced_job, ns)
    start = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: batch.create_namespaced_job(ns, plain_job(f"j-{i}")), range(count)))
    wait("every direct Job seen", lambda: len(watcher.seen) >= count)
    watcher.stop()
    seconds = max(watcher.seen.values()) - start
    settle(world, ns, count)
    return seconds


def throughput(world: World, count: int) -> Result:
    """`count` TrainingJobs created at once: time until every one has its first Job and a
    status; beside it, the same number of Jobs created directly by a tight client loop."""
    custom = client.CustomObjectsApi(world.api)
    batch = client.BatchV1Api(world.api)

    direct_before = _direct_jobs(world, count, "bench-direct")

    ns = namespace(world, "bench-stratus")
    watcher = FirstSeen(batch.list_namespaced_job, ns)
    pods = FirstSeen(client.CoreV1Api(world.api).list_namespaced_pod, ns)
    statuses = FirstSeen(
        custom.list_namespaced_custom_object,
        "stratus.dev",
        "v1alpha1",
        ns,
        "trainingjobs",
        when=lambda tj: bool(tj.get("status", {}).get("phase")),
    )
    created: dict[str, float] = {}

    def create(i: int) -> None:
        created[f"tj-{i}-1"] = time.monotonic()
        custom.create_namespaced_custom_object(
            "stratus.dev", "v1alpha1", ns, "trainingjobs", trainingjob(f"tj-{i}")
        )

    _, cpu_before = process_usage(world.operator.pid)
    start = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(create, range(count)))
    all_created = time.monotonic() - start

    wait("every TrainingJob's first Job", lambda: len(watcher.seen) >= count, timeout=900)
    wait("every TrainingJob's status", lambda: len(statuses.seen) >= count, timeout=900)
    stratus = max(*watcher.seen.values(), *statuses.seen.values()) - start
    _, cpu_after = process_usage(world.operator.pid)
    # Pods are the Job controller's work, not the operator's; reported for the peer comparison.
    wait("every TrainingJob's pod", lambda: len(pods.seen) >= count, timeout=900)
    watcher.stop()
    statuses.stop()
    pods.stop()
    settle(world, ns, count)
    latencies = [watcher.seen[name] - at for name, at in created.items() if name in watcher.seen]
    # The limit is measured before and after, each on a settled cluster; their mean is what
    # Stratus is judged against.
    direct_after = _direct_jobs(world, count, "bench-direct-after")
    direct = (direct_before + direct_after) / 2
    return {
        "count": count,
        "direct_jobs_seconds": round(direct, 3),
        "direct_jobs_runs_seconds": [round(direct_before, 3), round(direct_after, 3)],
        "stratus_seconds": round(stratus, 3),
        "ratio": round(stratus / direct, 3),
        "operator_cpu_seconds": round(cpu_after - cpu_before, 2),
        "stratus_breakdown_seconds": {
            "trainingjobs_created": round(all_created, 3),
            "jobs_created": round(max(watcher.seen.values()) - start, 3),
            "statuses_written": round(max(statuses.seen.values()) - start, 3),
            "pods_created": round(max(pods.seen.values()) - start, 3),
        },
        "target_ratio": 1.5,
        "create_to_job_seconds": quantiles(latencies),
    }


def audit_counts(world: World, ns: str) -> Counter[str]:
    counts: Counter[str] = Counter()
    for line in world.audit_log.read_text().splitlines():
        entry = json.loads(line)
        ref = entry.get("objectRef") or {}
        if entry["user"]["username"] != OPERATOR_USER or ref.get("namespace") != ns:
            continue
        resource = ref.get("resource", "") + (
            f"/{ref['subresource']}" if ref.get("subresource") else ""
        )
        counts[f"{entry['verb']} {resource}"] += 1
    return counts


def writes(counts: Counter[str]) -> int:
    return sum(
        n
        for key, n in counts.items()
        if key.split()[0] in ("create", "update", "patch", "delete") and not key.endswith(" events")
    )


def api_economy(world: World) -> Result:
    """API requests the operator makes, by verb and resource, over one TrainingJob's life and
    one InferenceService's three-step canary, read from the API server's audit log."""
    custom = client.CustomObjectsApi(world.api)
    ns = namespace(world, AUDITED_TRAINING)
    custom.create_namespaced_custom_object(
        "stratus.dev", "v1alpha1", ns, "trainingjobs", trainingjob("one", duration="1s")
    )
    wait(
        "the TrainingJob to succeed",
        lambda: (
            custom.get_namespaced_custom_object(
                "stratus.dev", "v1alpha1", ns, "trainingjobs", "one"
            )
            .get("status", {})
            .get("phase")
            == "Succeeded"
        ),
        timeout=120,
    )
    time.sleep(2)  # anything the operator does after success counts too
    training = audit_counts(world, ns)

    ns = namespace(world, AUDITED_SERVING)
    steps: list[dict[str, Any]] = [
        {"weight": 33, "pause": {"duration": "1s"}},
        {"weight": 66, "pause": {"duration": "1s"}},
        {"weight": 100},
    ]
    custom.create_namespaced_custom_object(
        "stratus.dev", "v1alpha1", ns, "inferenceservices", inference_service("svc", 3, steps)
    )

    def phase() -> dict[str, Any]:
        status: dict[str, Any] = custom.get_namespaced_custom_object(
            "stratus.dev", "v1alpha1", ns, "inferenceservices", "svc"
        ).get("status", {})
        return status

    wait("the first revision", lambda: phase().get("phase") == "Healthy", timeout=120)
    first = phase()["stableRevision"]
    before = audit_counts(world, ns)
    custom.patch_namespaced_custom_object(
        "stratus.dev", "v1alpha1", ns, "inferenceservices", "svc", {"spec": {"image": "serve:2"}}
    )
    wait(
        "the canary promoted",
        lambda: (
            phase().get("phase") == "Healthy"
            and phase().get("stableRevision") != first
            and not phase().get("canaryRevision")
            and "retiringRevision" not in phase()
        ),
        timeout=120,
    )
    time.sleep(2)
    rollout = audit_counts(world, ns) - before
    return {
        "trainingjob": {
            "writes_excluding_events": writes(training),
            "target_writes": 6,
            "requests": dict(sorted(training.items())),
        },
        "canary_three_steps": {
            "writes_excluding_events": writes(rollout),
            "writes_per_step": round(writes(rollout) / len(steps), 2),
            "requests": dict(sorted(rollout.items())),
        },
    }


def preemption_recovery(world: World, samples: int) -> Result:
    """Time from a spot node's reclaim to the next attempt's pod being scheduled; beside it, the
    Job controller alone replacing a disrupted pod of a plain Job (the limit here)."""
    core, custom = client.CoreV1Api(world.api), client.CustomObjectsApi(world.api)
    batch = client.BatchV1Api(world.api)
    nodes = kubeapi.connect(world.cluster.kubeconfig)

    def scheduled(selector: str, exclude: set[str], ns: str) -> list[Any]:
        return [
            p
            for p in core.list_namespaced_pod(ns, label_selector=selector).items
            if p.spec.node_name and p.metadata.name not in exclude
        ]

    def reclaim_and_time(selector: str, ns: str) -> float:
        wait(
            "a running pod",
            lambda: [
                p
                for p in core.list_namespaced_pod(ns, label_selector=selector).items
                if p.status.phase == "Running"
            ],
            timeout=120,
        )
        (pod,) = [
            p
            for p in core.list_namespaced_pod(ns, label_selector=selector).items
            if p.status.phase == "Running"
        ]
        start = time.monotonic()
        threading.Thread(
            target=nodes.preempt, args=(pod.spec.node_name,), kwargs={"replace": True}, daemon=True
        ).start()
        wait(
            "the replacement scheduled",
            lambda: scheduled(selector, {pod.metadata.name}, ns),
            timeout=120,
            interval=0.02,
        )
        return time.monotonic() - start

    ns = namespace(world, "bench-preempt")
    stratus: list[float] = []
    for i in range(samples):
        name = f"pre-{i}"
        custom.create_namespaced_custom_object(
            "stratus.dev",
            "v1alpha1",
            ns,
            "trainingjobs",
            trainingjob(name, gpu=1, spot={"enabled": True, "maxPreemptions": 5}),
        )
        stratus.append(reclaim_and_time(f"stratus.dev/trainingjob={name}", ns))
        custom.delete_namespaced_custom_object("stratus.dev", "v1alpha1", ns, "trainingjobs", name)
    limit: list[float] = []
    for i in range(samples):
        job = plain_job(
            f"plain-{i}",
            nodeSelector={"karpenter.sh/capacity-type": "spot"},
            tolerations=[SPOT, GPU_TOLERATION],
        )
        job["spec"]["podFailurePolicy"] = {
            "rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]
        }
        batch.create_namespaced_job(ns, job)
        limit.append(reclaim_and_time(f"job-name=plain-{i}", ns))
        batch.delete_namespaced_job(f"plain-{i}", ns, propagation_policy="Background")
    s, j = quantiles(stratus), quantiles(limit)
    return {
        "stratus_reclaim_to_next_attempt_scheduled": s,
        "job_controller_reclaim_to_replacement_scheduled": j,
        "ratio_p50": round(s["p50"] / j["p50"], 3) if j.get("p50") else None,
    }


def rollout_step_latency(world: World, services: int) -> Result:
    """Delay between a pause's end and the next weight being applied (status polled at 10 ms)."""
    custom = client.CustomObjectsApi(world.api)
    ns = namespace(world, "bench-rollout")
    pause = 1.0
    delays: list[float] = []
    for i in range(services):
        name = f"steps-{i}"
        steps = [{"weight": w, "pause": {"duration": "1s"}} for w in (25, 50, 75, 100)]
        custom.create_namespaced_custom_object(
            "stratus.dev",
            "v1alpha1",
            ns,
            "inferenceservices",
            inference_service(name, 4, steps),
        )

        def status(n: str = name) -> dict[str, Any]:
            found: dict[str, Any] = custom.get_namespaced_custom_object(
                "stratus.dev", "v1alpha1", ns, "inferenceservices", n
            ).get("status", {})
            return found

        wait("the first revision", lambda: status().get("phase") == "Healthy", timeout=120)
        custom.patch_namespaced_custom_object(
            "stratus.dev", "v1alpha1", ns, "inferenceservices", name, {"spec": {"image": "serve:2"}}
        )
        changes: list[float] = []
        last = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            current = status()
            weight = current.get("canaryWeight")
            if weight != last and weight:
                changes.append(time.monotonic())
            last = weight
            if current.get("phase") == "Healthy" and not current.get("canaryRevision") and changes:
                break
            time.sleep(0.01)
        delays += [b - a - pause for a, b in itertools.pairwise(changes)]
    return {"pause_end_to_next_weight_seconds": quantiles(delays)}


def process_usage(pid: int) -> tuple[float, float]:
    """Resident MiB and CPU seconds (user + system) of a process."""
    rss_kib = next(
        int(line.split()[1])
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if line.startswith("VmRSS:")
    )
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    return rss_kib / 1024, ticks / 100


def events_pending(world: World) -> float:
    """The operator's Events not posted yet, from its metrics endpoint."""
    (family,) = metrics.EVENTS_PENDING.describe()
    name = family.name
    with urllib.request.urlopen(f"http://127.0.0.1:{world.metrics_port}/metrics") as answer:
        text = answer.read().decode()
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    if found is None:
        raise RuntimeError(f"the operator exports no {name}")
    return float(found.group(1))


def footprint(world: World, trainingjobs: int, services: int, idle_seconds: float) -> Result:
    """Operator memory and idle CPU with many resources on many nodes."""
    custom = client.CustomObjectsApi(world.api)
    ns = namespace(world, "bench-scale")
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda i: custom.create_namespaced_custom_object(
                    "stratus.dev", "v1alpha1", ns, "trainingjobs", trainingjob(f"s-{i}")
                ),
                range(trainingjobs),
            )
        )
        list(
            pool.map(
                lambda i: custom.create_namespaced_custom_object(
                    "stratus.dev",
                    "v1alpha1",
                    ns,
                    "inferenceservices",
                    inference_service(f"s-{i}", 1),
                ),
                range(services),
            )
        )

    def settled() -> bool:
        tjs = custom.list_namespaced_custom_object("stratus.dev", "v1alpha1", ns, "trainingjobs")[
            "items"
        ]
        infs = custom.list_namespaced_custom_object(
            "stratus.dev", "v1alpha1", ns, "inferenceservices"
        )["items"]
        # Idle means nothing left to do: every attempt running, every service healthy.
        running = sum(1 for t in tjs if t.get("status", {}).get("phase") == "Running")
        healthy = sum(1 for s in infs if s.get("status", {}).get("phase") == "Healthy")
        return running >= trainingjobs and healthy >= services

    wait("every resource reconciled", settled, timeout=1800, interval=2)
    # The Events of the burst trail behind at a bounded rate; idle means they are out too.
    wait("every Event posted", lambda: events_pending(world) == 0, timeout=600, interval=1)
    time.sleep(5)
    pid = world.operator.pid
    rss_before, cpu_before = process_usage(pid)
    time.sleep(idle_seconds)
    rss, cpu_after = process_usage(pid)
    idle_cpu = (cpu_after - cpu_before) / idle_seconds
    return {
        "trainingjobs": trainingjobs,
        "inferenceservices": services,
        "resident_mib": round(max(rss, rss_before), 1),
        "target_resident_mib": 200,
        "idle_cpu_fraction_of_a_core": round(idle_cpu, 4),
        "target_idle_cpu": 0.05,
    }
