"""The benchmarks. Each measures Stratus and, beside it in the same run on the same cluster, the
limit it is judged against, and returns figures and ratios (never a pass/fail on time)."""

from __future__ import annotations

import asyncio
import datetime as dt
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

import yaml
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import ProtocolError

from bench.harness import (
    AUDITED_SCALE,
    AUDITED_SERVING,
    AUDITED_TRAINING,
    OPERATOR_USER,
    REPO,
    World,
    namespace,
    wait,
)
from stratus import metrics
from stratus.api.trainingjob import KIND, TrainingJobSpec
from stratus.conditions import parse_time
from stratus.config import OperatorConfig
from stratus.devcluster import kubeapi
from stratus.devcluster.nodepools import SIMULATED_TOLERATION
from stratus.kube import WRITE_THREADS, Kube
from stratus.podspec import Owner
from stratus.training import planner

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
# Client threads that create a burst of resources, here and in the peer benchmark.
CLIENT_THREADS = 8
# Where simulated pods go: kwok's nodes only. The toleration lets them onto those nodes, which
# carry kwok's taint when a real node is in the cluster; the selector (kwok's nodes carry
# `type: kwok`) keeps them off the real node, which is untainted and has none of their images.
KWOK_SELECTOR = {"type": "kwok"}


def simulated(**pod: Any) -> dict[str, Any]:
    """Pod spec fields that keep a pod on kwok's nodes, merged into `pod`'s own."""
    return {
        **pod,
        "tolerations": [*pod.get("tolerations", []), dict(SIMULATED_TOLERATION)],
        "nodeSelector": {**pod.get("nodeSelector", {}), **KWOK_SELECTOR},
    }


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
            # Tolerations in the template are appended to the generated ones.
            "podTemplate": {"metadata": {"annotations": annotations}, "spec": simulated()},
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
        "podTemplate": {"spec": simulated()},
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
                    **simulated(**pod),
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
    """The physical limit: `count` Jobs created by a tight loop of CLIENT_THREADS client
    threads; seconds until the last one is seen."""
    batch = client.BatchV1Api(world.api)
    ns = namespace(world, name)
    watcher = FirstSeen(batch.list_namespaced_job, ns)
    start = time.monotonic()
    with ThreadPoolExecutor(CLIENT_THREADS) as pool:
        list(pool.map(lambda i: batch.create_namespaced_job(ns, plain_job(f"j-{i}")), range(count)))
    wait("every direct Job seen", lambda: len(watcher.seen) >= count)
    watcher.stop()
    seconds = max(watcher.seen.values()) - start
    settle(world, ns, count)
    return seconds


# The write floor's copy of the TrainingJob CRD: the same schema and validation rules under a
# group of its own, which the operator does not watch.
FLOOR_GROUP = "floor.bench.stratus.dev"
FLOOR_API_VERSION = f"{FLOOR_GROUP}/v1alpha1"
# The label keys the operator selects its Jobs and pods by, renamed on the write floor's Jobs.
FLOOR_LABEL_PREFIX = ("stratus.dev/", f"{FLOOR_GROUP}/")


def install_floor_crd(world: World) -> None:
    crd = yaml.safe_load((REPO / "crds" / "trainingjobs.stratus.dev.yaml").read_text())
    crd["metadata"] = {"name": f"trainingjobs.{FLOOR_GROUP}"}
    crd["spec"]["group"] = FLOOR_GROUP
    for unique in ("shortNames", "categories"):
        crd["spec"]["names"].pop(unique, None)
    crds = client.ApiextensionsV1Api(world.api)
    try:
        crds.create_custom_resource_definition(crd)
    except ApiException as exc:
        if exc.status != 409:
            raise

    def established() -> bool:
        found = crds.read_custom_resource_definition(crd["metadata"]["name"])
        return any(
            c.type == "Established" and c.status == "True" for c in found.status.conditions or []
        )

    wait("the write floor's CRD", established, timeout=60)


def _unwatched(job: dict[str, Any], owner_uid: str) -> dict[str, Any]:
    """The operator's Job, pointing at the write floor's copy of its TrainingJob, with the
    label keys the operator selects by renamed (so it neither reconciles it nor its pods)."""
    old, new = FLOOR_LABEL_PREFIX

    def relabel(labels: dict[str, str]) -> dict[str, str]:
        return {(new + k[len(old) :] if k.startswith(old) else k): v for k, v in labels.items()}

    job["metadata"]["labels"] = relabel(job["metadata"]["labels"])
    template = job["spec"]["template"]["metadata"]
    template["labels"] = relabel(template["labels"])
    (reference,) = job["metadata"]["ownerReferences"]
    reference.update(apiVersion=FLOOR_API_VERSION, uid=owner_uid)
    return job


def floor_writer(world: World) -> Kube:
    """The operator's own writer (stratus.kube.Kube: its thread pool of WRITE_THREADS, a
    connection pool as large, responses not decoded) on the admin credentials."""
    configuration = client.Configuration()
    config.load_kube_config(
        config_file=str(world.cluster.kubeconfig), client_configuration=configuration
    )
    configuration.connection_pool_maxsize = WRITE_THREADS + 2
    writer = Kube(client.ApiClient(configuration))

    async def warm() -> None:
        # Discovery of both kinds before the clock starts, as in the running operator.
        for api_version, kind in ((FLOOR_API_VERSION, KIND), ("batch/v1", "Job")):
            if not await writer.has_kind(api_version, kind):
                raise RuntimeError(f"the API server does not serve {api_version} {kind}")

    asyncio.run(warm())
    return writer


def _write_floor(world: World, count: int, name: str, writer: Kube) -> float:
    """The writes `count` TrainingJobs cannot avoid, by a tight client loop with Stratus's
    concurrency: CLIENT_THREADS threads create the TrainingJobs (as the Stratus burst does); as
    each one returns, its Job is created and its status patched, in that order, through the
    operator's writer (WRITE_THREADS threads). The Job and the status are what the operator's
    planner makes for a new TrainingJob, computed before the clock starts. Seconds until every
    Job and every status is seen, as for Stratus."""
    custom = client.CustomObjectsApi(world.api)
    batch = client.BatchV1Api(world.api)
    ns = namespace(world, name)
    settings = OperatorConfig()
    spec = TrainingJobSpec.model_validate(trainingjob("floor")["spec"])
    now = dt.datetime.now(dt.UTC)
    work: list[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = []
    for i in range(count):
        tj = {**trainingjob(f"tj-{i}"), "apiVersion": FLOOR_API_VERSION}
        observed = planner.Observed(
            owner=Owner(KIND, f"tj-{i}", ns, ""),
            generation=1,
            spec=spec,
            spec_error=None,
            status={},
            jobs=(),
            pods=(),
            now=now,
        )
        plan = planner.plan(observed, settings.spot, settings.master_port)
        (job,) = plan.create
        work.append((tj, job, plan.status))
    jobs = FirstSeen(batch.list_namespaced_job, ns)
    statuses = FirstSeen(
        custom.list_namespaced_custom_object,
        FLOOR_GROUP,
        "v1alpha1",
        ns,
        "trainingjobs",
        when=lambda tj: bool(tj.get("status", {}).get("phase")),
    )

    def create(tj: dict[str, Any]) -> dict[str, Any]:
        created: dict[str, Any] = custom.create_namespaced_custom_object(
            FLOOR_GROUP, "v1alpha1", ns, "trainingjobs", tj
        )
        return created

    async def burst() -> None:
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(CLIENT_THREADS) as creators:

            async def one(tj: dict[str, Any], job: dict[str, Any], status: dict[str, Any]) -> None:
                meta = (await loop.run_in_executor(creators, create, tj))["metadata"]
                await writer.create(_unwatched(job, meta["uid"]))
                # As the operator writes it: a merge patch of the status subresource from the
                # status it read (none yet), guarded by the resourceVersion it read.
                await writer.patch_status(
                    FLOOR_API_VERSION, KIND, ns, meta["name"], meta["resourceVersion"], {}, status
                )

            await asyncio.gather(*(one(*item) for item in work))

    start = time.monotonic()
    asyncio.run(burst())
    wait("every write floor Job", lambda: len(jobs.seen) >= count, timeout=900)
    wait("every write floor status", lambda: len(statuses.seen) >= count, timeout=900)
    seconds = max(*jobs.seen.values(), *statuses.seen.values()) - start
    jobs.stop()
    statuses.stop()
    settle(world, ns, count)
    return seconds


def throughput(world: World, count: int) -> Result:
    """`count` TrainingJobs created at once: time until every one has its first Job and a
    status; beside it, the same number of Jobs created directly by a tight client loop, and the
    write floor: the same TrainingJobs, Jobs and status writes by a tight client loop."""
    custom = client.CustomObjectsApi(world.api)
    batch = client.BatchV1Api(world.api)

    install_floor_crd(world)
    writer = floor_writer(world)
    # Untimed: the API server's first requests for a new kind, and the writer's connections,
    # cost what the running operator's do not.
    _write_floor(world, WRITE_THREADS, "bench-floor-warmup", writer)
    # Each limit is measured before and after Stratus's burst, each on a settled cluster, in
    # mirrored order; their means are what Stratus is judged against.
    direct_before = _direct_jobs(world, count, "bench-direct")
    floor_before = _write_floor(world, count, "bench-floor", writer)

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
    with ThreadPoolExecutor(CLIENT_THREADS) as pool:
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
    floor_after = _write_floor(world, count, "bench-floor-after", writer)
    direct_after = _direct_jobs(world, count, "bench-direct-after")
    direct = (direct_before + direct_after) / 2
    floor = (floor_before + floor_after) / 2
    return {
        "count": count,
        "direct_jobs_seconds": round(direct, 3),
        "direct_jobs_runs_seconds": [round(direct_before, 3), round(direct_after, 3)],
        "write_floor_seconds": round(floor, 3),
        "write_floor_runs_seconds": [round(floor_before, 3), round(floor_after, 3)],
        "write_floor_client": {
            "writes_per_trainingjob": 3,
            "trainingjob_create_threads": CLIENT_THREADS,
            "job_create_and_status_patch_threads": WRITE_THREADS,
        },
        "stratus_seconds": round(stratus, 3),
        "ratio": round(stratus / direct, 3),
        "ratio_vs_direct_jobs": round(stratus / direct, 3),
        "ratio_vs_write_floor": round(stratus / floor, 3),
        "operator_cpu_seconds": round(cpu_after - cpu_before, 2),
        "stratus_breakdown_seconds": {
            "trainingjobs_created": round(all_created, 3),
            "jobs_created": round(max(watcher.seen.values()) - start, 3),
            "statuses_written": round(max(statuses.seen.values()) - start, 3),
            "pods_created": round(max(pods.seen.values()) - start, 3),
        },
        # Judged against the writes no operator can avoid; the direct Jobs write no status, so
        # no operator that writes one can come near them (ratio_vs_direct_jobs, for reference).
        "target_ratio_vs_write_floor": 1.5,
        "create_to_job_seconds": quantiles(latencies),
    }


def audit_counts(world: World, ns: str, between: tuple[float, float] | None = None) -> Counter[str]:
    """The operator's requests in `ns` by verb and resource; only those answered `between`
    two wall-clock times, if given."""
    counts: Counter[str] = Counter()
    for line in world.audit_log.read_text().splitlines():
        entry = json.loads(line)
        ref = entry.get("objectRef") or {}
        if entry["user"]["username"] != OPERATOR_USER or ref.get("namespace") != ns:
            continue
        if between is not None:
            at = dt.datetime.fromisoformat(entry["stageTimestamp"]).timestamp()
            if not between[0] <= at <= between[1]:
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
        # A pause counts from when its step's split stood (status.stepInPlaceAt, the operator's
        # clock on this machine), so its end is that stamp plus the pause.
        stood: float | None = None
        last = None
        started = False
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            current = status()
            weight = current.get("canaryWeight")
            started = started or bool(current.get("canaryRevision"))
            promoted = started and not current.get("canaryRevision")
            if weight != last and stood is not None and not promoted:
                delays.append(time.time() - stood - pause)
                stood = None
            last = weight
            if promoted:
                break
            if stood is None and (at := parse_time(current.get("stepInPlaceAt"))):
                stood = at.timestamp()
            time.sleep(0.01)
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
    ns = namespace(world, AUDITED_SCALE)
    with ThreadPoolExecutor(CLIENT_THREADS) as pool:
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
    began = time.time()
    time.sleep(idle_seconds)
    rss, cpu_after = process_usage(pid)
    idle_cpu = (cpu_after - cpu_before) / idle_seconds
    # What the idle operator still asks: metering refreshes (at most one a second per kind)
    # and nothing else; a child applied on every pass shows here first.
    idle = audit_counts(world, ns, (began, time.time()))
    return {
        "trainingjobs": trainingjobs,
        "inferenceservices": services,
        "resident_mib": round(max(rss, rss_before), 1),
        "target_resident_mib": 200,
        "idle_cpu_fraction_of_a_core": round(idle_cpu, 4),
        "target_idle_cpu": 0.05,
        "idle_writes": writes(idle),
        "idle_requests": dict(idle.most_common()),
    }
