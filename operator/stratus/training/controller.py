"""The TrainingJob reconciler: reads the operator's caches, asks the planner, writes the plan.
It holds no decisions of its own."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from stratus import metrics, policy, reconciling
from stratus.api.common import API_VERSION
from stratus.api.trainingjob import KIND, TrainingJobSpec
from stratus.clock import now as clock_now
from stratus.clock import real_now
from stratus.conditions import Event
from stratus.config import OperatorConfig
from stratus.cost import usage
from stratus.kube import Kube
from stratus.podspec import Manifest, Owner
from stratus.training import planner
from stratus.training.views import (
    KUEUE_GROUP,
    KUEUE_VERSION,
    EventView,
    JobView,
    PodView,
    WorkloadView,
    event_view,
    with_capacity,
    workload_view,
)

log = logging.getLogger(__name__)

EXPECTATION_TTL = 30.0
# Progress alone (Scheduled, Running, a checkpoint) is written at most this often per
# TrainingJob: transitions that follow each other closely share one write. Decisions (a new
# attempt, an outcome) are written at once.
PROGRESS_INTERVAL = 1.0
# How often a queued attempt whose Workload is read directly (not watched) is looked at again.
WORKLOAD_POLL = 5.0
# Kueue's label on the Workload of a Job: the Job's uid.
KUEUE_JOB_UID_LABEL = "kueue.x-k8s.io/job-uid"
Key = tuple[str, str]
# Reads of the caches: key -> the values indexed under it.
Lookup = Callable[[Key], Iterable[Any]]


@dataclass
class TrainingController:
    kube: Kube
    config: OperatorConfig
    trainingjobs: Lookup
    jobs: Lookup
    pods: Lookup
    # Every key the TrainingJob cache holds.
    keys: Callable[[], Iterable[Key]] = lambda: ()
    # How many the cache holds (cheap: listing the keys walks the whole index).
    count: Callable[[], int] = lambda: 0
    # Kueue's Workloads by (namespace, Job name).
    workloads: Lookup = lambda _key: ()
    clock: Callable[[], dt.datetime] = clock_now
    # Metering's time: real, whatever the clock says.
    real_clock: Callable[[], dt.datetime] = real_now
    # What may hold a new attempt back (a budget, a start window): each says why, or None.
    gates: list[Callable[[planner.Observed], planner.Hold | None]] = field(default_factory=list)
    # What reports a condition without holding anything back (a budget's estimate): or None.
    advisors: list[Callable[[planner.Observed], planner.Advice | None]] = field(
        default_factory=list
    )
    status_writer: reconciling.StatusWriter = field(init=False)

    def __post_init__(self) -> None:
        self.status_writer = reconciling.StatusWriter(self.kube, KIND)

    # Final states of deleted pods, kept until their attempt is behind us: a preempted pod's
    # termination message (its last checkpoint) outlives the pod only here.
    tombstones: dict[Key, dict[str, PodView]] = field(default_factory=dict)
    # Jobs created but not yet seen in the cache (controller-runtime calls these expectations),
    # with when they were created: an expectation not met within EXPECTATION_TTL lapses.
    expected: dict[Key, dict[str, float]] = field(default_factory=dict)

    def pod_deleted(self, key: Key, pod: PodView) -> None:
        self.tombstones.setdefault(key, {})[pod.name] = pod

    def phases(self) -> dict[str, int]:
        """TrainingJobs by phase, for the metrics endpoint."""
        return reconciling.count_phases(self.keys(), self.trainingjobs)

    def workloads_cached(self) -> list[tuple[str, dict[str, Any]]]:
        """(kind, object) of every TrainingJob in the cache, for per-workload usage."""
        return [(KIND, obj) for obj in reconciling.cached(self.keys(), self.trainingjobs)]

    async def reconcile(self, key: Hashable) -> float | None:
        assert isinstance(key, tuple)
        return await reconciling.timed(KIND, self._reconcile(key))

    async def _reconcile(self, key: Key) -> float | None:
        obj = reconciling.live(self.trainingjobs(key))
        if obj is None:
            self.tombstones.pop(key, None)
            self.expected.pop(key, None)
            self.status_writer.forget(key)
            return None
        meta = obj["metadata"]
        if self.status_writer.stale(key, meta):
            # Our own write's event reconciles again; the timer is only a safety net.
            return reconciling.STALE_RETRY
        observed, polled = await self._with_kueue(self._observe(key, obj))
        status = observed.status
        violations = (
            policy.check(observed.spec, self.config.workload_policy) if observed.spec else ()
        )
        if violations:
            # Refused before anything is created; the status and one Event name the fields.
            refused, events = policy.refused(
                status, violations, "Ready", observed.now, observed.generation
            )
            retry = await self.status_writer.write(key, meta, status, refused)
            if retry is None:
                reconciling.record(self.kube, obj, events)
            return retry
        plan = planner.plan(observed, self.config.spot, self.config.master_port, self.config.prices)
        if plan.read_events is not None:
            read = await self._events(observed.owner.namespace, plan.read_events)
            if read is not None:
                observed = dataclasses.replace(observed, job_events=read)
                plan = planner.plan(
                    observed, self.config.spot, self.config.master_port, self.config.prices
                )
        if plan.progress_only and plan.status != status:
            held = self.status_writer.hold(key, PROGRESS_INTERVAL)
            if held is not None:
                return held
        # Children before the status that records them: an attempt's Job is named after the
        # attempt, so creating it again is harmless, and one status write carries both the new
        # attempt and its Job (a status naming a Job that is not there would be worse).
        for manifest in plan.create:
            await self._create(key, obj, observed, manifest)
            if manifest["kind"] == "Job":
                self.expected[key][manifest["metadata"]["name"]] = time.monotonic()
        retry = await self.status_writer.write(key, meta, status, plan.status)
        if retry is not None:
            return retry
        await self._carry_out(obj, observed, plan)
        return (
            min(plan.requeue_after or WORKLOAD_POLL, WORKLOAD_POLL)
            if polled
            else plan.requeue_after
        )

    async def _carry_out(
        self, obj: dict[str, Any], observed: planner.Observed, plan: planner.Plan
    ) -> None:
        """What follows the status write: adoptions, deletions, Events and metrics."""
        meta, owner, spec = obj["metadata"], observed.owner, observed.spec
        for name in plan.adopt:
            await self.kube.merge_patch(
                "batch/v1",
                "Job",
                meta["namespace"],
                name,
                {"metadata": {"ownerReferences": [owner.reference()]}},
            )
        for job in plan.delete_jobs:
            await self.kube.delete("batch/v1", "Job", meta["namespace"], job)
        if plan.delete_self:
            await self.kube.delete(API_VERSION, KIND, meta["namespace"], meta["name"])
        reconciling.record(self.kube, obj, plan.events)
        team = metrics.team_label(spec.team if spec else None, self.config.teams)
        for name in plan.counts:
            metrics.TRAINING_COUNTS[name].labels(team).inc()
        if plan.gpu_seconds:
            metrics.TRAINING_GPU_SECONDS.labels(team).inc(plan.gpu_seconds)
        if spec:
            prices = self.config.prices
            labels = (
                team,
                metrics.team_label(spec.cost_center, self.config.cost_centers),
                KIND,
                prices.key(spec.resources.gpu_type),
            )
            old = (observed.status.get("usage"), plan.status.get("usage"))
            metrics.record_usage(labels, usage.increments(*old, prices))

    async def _with_kueue(self, observed: planner.Observed) -> tuple[planner.Observed, bool]:
        """A queued TrainingJob's view with whether Kueue runs in the cluster, and its attempt's
        Workload read from the API server when the cache has none; True when it was (the pass
        then comes back within WORKLOAD_POLL seconds)."""
        if observed.spec is None or not observed.spec.queue_name:
            return observed, False
        kueue = await self.kube.has_kind(f"{KUEUE_GROUP}/{KUEUE_VERSION}", "Workload")
        observed = dataclasses.replace(observed, kueue=kueue)
        read = await self._read_workload(observed) if kueue else None
        if read is None:
            return observed, False
        return dataclasses.replace(observed, workloads=(*observed.workloads, *read)), True

    async def _read_workload(self, observed: planner.Observed) -> tuple[WorkloadView, ...] | None:
        """The active attempt's Workload read from the API server when the cache has none: kopf
        watches Workloads only once it sees Kueue's CRDs appear, and it misses them when the API
        server's discovery lags their events (Kueue installed after the operator started). None
        when the cache has it or no live Job needs it."""
        active = observed.status.get("activeJob")
        job = next((j for j in observed.jobs if j.name == active and not j.finished), None)
        if job is None or not job.uid or any(w.job == job.name for w in observed.workloads):
            return None
        try:
            found = await self.kube.list_labelled(
                f"{KUEUE_GROUP}/{KUEUE_VERSION}",
                "Workload",
                observed.owner.namespace,
                f"{KUEUE_JOB_UID_LABEL}={job.uid}",
            )
        except ApiException as exc:
            log.warning("cannot read the Workload of Job %s: %s", job.name, exc.reason)
            return ()
        return tuple(workload_view(w) for w in found)

    async def _events(self, namespace: str, job: JobView) -> tuple[EventView, ...] | None:
        """The Job's Events, or None when they cannot be read (the plan then keeps what the
        status last said)."""
        try:
            found = await self.kube.list_events(namespace, "Job", job.name, job.uid)
        except ApiException as exc:
            log.warning("cannot read the Events of Job %s/%s: %s", namespace, job.name, exc.reason)
            return None
        return tuple(event_view(e) for e in found)

    def _observe(self, key: Key, obj: dict[str, Any]) -> planner.Observed:
        """The TrainingJob with its Jobs and pods, from the caches and this process's memory
        (pods deleted since, Jobs created but not yet seen)."""
        meta = obj["metadata"]
        spec, error = _parse_spec(obj.get("spec") or {})
        status = obj.get("status") or {}
        attempt = int(status.get("attempt") or 0)
        dead = self.tombstones.get(key, {})
        for name in [n for n, p in dead.items() if p.attempt < attempt - 1]:
            del dead[name]
        spot = self.config.spot
        pods = {
            p.name: with_capacity(p, spot.label, spot.spot_value)
            for p in (*self.pods(key), *dead.values())
        }
        jobs = tuple(self._with_capacity(self.jobs(key), pods.values()))
        seen = {j.name for j in jobs}
        now = time.monotonic()
        expected = {
            name: at
            for name, at in self.expected.get(key, {}).items()
            if name not in seen and now - at < EXPECTATION_TTL
        }
        self.expected[key] = expected
        observed = planner.Observed(
            owner=Owner(KIND, meta["name"], meta["namespace"], meta["uid"]),
            generation=int(meta.get("generation") or 0),
            spec=spec,
            spec_error=error,
            status=status,
            jobs=jobs,
            pending_jobs=frozenset(expected),
            pods=tuple(pods.values()),
            now=self.clock(),
            real_time=self.real_clock(),
            usage_refresh=usage.refresh_interval(self.count()),
            workloads=tuple(w for j in jobs for w in self.workloads((meta["namespace"], j.name))),
        )
        if observed.spec is None or not (self.gates or self.advisors):
            return observed
        holds = tuple(hold for gate in self.gates if (hold := gate(observed)) is not None)
        advice = tuple(a for advisor in self.advisors if (a := advisor(observed)) is not None)
        return dataclasses.replace(observed, holds=holds, advice=advice)

    def _with_capacity(self, jobs: Iterable[JobView], pods: Iterable[PodView]) -> Iterable[JobView]:
        """Each Job with its capacity type: its label's, its flavor's while Kueue admits it, else
        its pods' (Kueue takes the flavor off the Job when it evicts it; pods keep theirs)."""
        by_attempt = {p.attempt: p.capacity for p in pods if p.capacity}
        for job in jobs:
            view = with_capacity(job, self.config.spot.label, self.config.spot.spot_value)
            if view.capacity is None and job.attempt in by_attempt:
                view = dataclasses.replace(view, capacity=by_attempt[job.attempt])
            yield view

    async def _create(
        self, key: Key, obj: dict[str, Any], observed: planner.Observed, manifest: Manifest
    ) -> None:
        """Create a child; a refusal that a retry will not fix soon is shown in the status."""
        try:
            await self.kube.create(manifest)
        except ApiException as exc:
            if exc.status not in (400, 403, 404, 422):
                raise
            why = f"the API server rejected {manifest['kind']} {manifest['metadata']['name']}"
            why += f": {_reason(exc)}"
            rejected = planner.rejected(observed, why)
            await self.status_writer.write(key, obj["metadata"], observed.status, rejected)
            reconciling.record(self.kube, obj, [Event("Warning", planner.CREATE_FAILED, why)])
            raise


def _reason(exc: ApiException) -> str:
    try:
        message = str(json.loads(exc.body)["message"])
    except (TypeError, ValueError, KeyError):
        message = str(exc.reason)
    return message[:512]


def _parse_spec(raw: Mapping[str, Any]) -> tuple[TrainingJobSpec | None, str | None]:
    try:
        return TrainingJobSpec.model_validate(raw), None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return None, f"spec.{where}: {first['msg']}"
