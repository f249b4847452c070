"""The TrainingJob reconciler: reads the operator's caches, asks the planner, writes the plan.
It holds no decisions of its own."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from stratus import metrics, reconciling
from stratus.api.common import API_VERSION
from stratus.api.trainingjob import KIND, TrainingJobSpec
from stratus.config import OperatorConfig
from stratus.kube import Kube
from stratus.podspec import Owner
from stratus.training import planner
from stratus.training.views import PodView

log = logging.getLogger(__name__)
EXPECTATION_TTL = 30.0
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
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)
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

    async def reconcile(self, key: Hashable) -> float | None:
        assert isinstance(key, tuple)
        return await reconciling.timed(KIND, self._reconcile(key))

    async def _reconcile(self, key: Key) -> float | None:
        obj = reconciling.live(self.trainingjobs(key))
        if obj is None:
            self.tombstones.pop(key, None)
            self.expected.pop(key, None)
            return None
        meta = obj["metadata"]
        if self.status_writer.stale(key, meta):
            # Our own write's event reconciles again; the timer is only a safety net.
            return reconciling.STALE_RETRY
        spec, error = _parse_spec(obj.get("spec") or {})
        status = obj.get("status") or {}
        attempt = int(status.get("attempt") or 0)
        dead = self.tombstones.get(key, {})
        for name in [n for n, p in dead.items() if p.attempt < attempt - 1]:
            del dead[name]
        live = {p.name: p for p in self.pods(key)}
        owner = Owner(KIND, meta["name"], meta["namespace"], meta["uid"])
        jobs = tuple(self.jobs(key))
        seen = {j.name for j in jobs}
        now = time.monotonic()
        expected = {
            name: at
            for name, at in self.expected.get(key, {}).items()
            if name not in seen and now - at < EXPECTATION_TTL
        }
        self.expected[key] = expected
        observed = planner.Observed(
            owner=owner,
            generation=int(meta.get("generation") or 0),
            spec=spec,
            spec_error=error,
            status=status,
            jobs=jobs,
            pending_jobs=frozenset(expected),
            pods=tuple({**live, **dead}.values()),
            now=self.clock(),
        )
        plan = planner.plan(observed, self.config.spot, self.config.master_port)
        retry = await self.status_writer.write(key, meta, status, plan.status)
        if retry is not None:
            return retry
        for manifest in plan.create:
            await self.kube.apply(manifest)
            if manifest["kind"] == "Job":
                expected[manifest["metadata"]["name"]] = time.monotonic()
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
        for event in plan.events:
            await self.kube.event(obj, event.type, event.reason, event.message)
            log.info(
                "%s %s/%s: %s: %s",
                KIND,
                meta["namespace"],
                meta["name"],
                event.reason,
                event.message,
            )
        for name in plan.counts:
            metrics.TRAINING_COUNTS[name].inc()
        if plan.gpu_seconds and spec is not None:
            metrics.TRAINING_GPU_SECONDS.labels(spec.team or "").inc(plan.gpu_seconds)
        return plan.requeue_after


def _parse_spec(raw: Mapping[str, Any]) -> tuple[TrainingJobSpec | None, str | None]:
    try:
        return TrainingJobSpec.model_validate(raw), None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return None, f"spec.{where}: {first['msg']}"
