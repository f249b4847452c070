"""The InferenceService reconciler: reads the caches, asks the planner (measuring the canary in
Prometheus when the planner says it is time), writes the plan."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any

from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from stratus import metrics, policy, reconciling
from stratus.api.inferenceservice import KIND, InferenceServiceSpec
from stratus.clock import now as clock_now
from stratus.clock import real_now
from stratus.conditions import Event, set_condition
from stratus.config import OperatorConfig
from stratus.cost import usage
from stratus.cost.pods import MeteredPod
from stratus.kube import Kube
from stratus.podspec import Manifest, Owner
from stratus.schedules import idle as idle_signals
from stratus.serving import builders, hold, planner, prometheus
from stratus.serving.validator import ValidatorView
from stratus.serving.views import (
    ChildView,
    DeploymentView,
    RouteView,
    StagingFailure,
    child_view,
    deployment_view,
    route_view,
    up_to_date,
)

Key = tuple[str, str]
HTTPROUTE = ("gateway.networking.k8s.io/v1", "HTTPRoute")
KEDA = builders.SCALED_OBJECT
Lookup = Callable[[Key], Iterable[Any]]
# The children the caches watch (Services, PodDisruptionBudgets, HPAs), by kind.
WATCHED = frozenset({"Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"})
# A child applied but not yet seen as applied in the cache (a watched one, or a Deployment)
# counts as there for this long (seconds), so the pass that our own write's event starts does
# not apply it again.
EXPECTATION_TTL = 10.0
EXPECTED = WATCHED | {"Deployment"}


class ChildRejected(Exception):
    """The API server refused a child (invalid, forbidden): a retry will not fix it soon."""


@dataclass
class ServingController:
    kube: Kube
    config: OperatorConfig
    services: Lookup
    deployments: Lookup
    failures: Lookup
    keys: Callable[[], Iterable[Key]] = lambda: ()
    # How many the cache holds (cheap: listing the keys walks the whole index).
    count: Callable[[], int] = lambda: 0
    clock: Callable[[], dt.datetime] = clock_now
    # Metering's time: real, whatever the clock says.
    real_clock: Callable[[], dt.datetime] = real_now
    # Its Services, PodDisruptionBudget and HPA (ChildView), from the caches.
    children: Lookup = lambda _key: ()
    # Its validator pods (ValidatorView), from the caches.
    validators: Lookup = lambda _key: ()
    # Its pods with GPUs that have run (MeteredPod), from the caches.
    pods: Lookup = lambda _key: ()
    status_writer: reconciling.StatusWriter = field(init=False)
    # Children applied but not yet seen so in the cache (controller-runtime's expectations):
    # key -> (kind, name) -> (when, the manifest applied).
    expected: dict[Key, dict[tuple[str, str], tuple[float, Manifest]]] = field(default_factory=dict)
    # When idle reclamation's signals were last read (monotonic seconds), by key.
    idle_read: dict[Key, float] = field(default_factory=dict)

    # Last states of its GPU pods seen deleted, by uid, until a status write settles their time.
    gone: dict[Key, dict[str, MeteredPod]] = field(default_factory=dict)
    # The GPU pods (uids) the last status write counted, by key.
    counted: dict[Key, frozenset[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.status_writer = reconciling.StatusWriter(self.kube, KIND)

    def pod_gone(self, key: Key, pod: MeteredPod) -> None:
        self.gone.setdefault(key, {})[pod.uid] = pod

    def phases(self) -> dict[str, int]:
        """InferenceServices by phase, for the metrics endpoint."""
        return reconciling.count_phases(self.keys(), self.services)

    def workloads_cached(self) -> list[tuple[str, dict[str, Any]]]:
        """(kind, object) of every InferenceService in the cache, for per-workload usage."""
        return [(KIND, obj) for obj in reconciling.cached(self.keys(), self.services)]

    async def reconcile(self, key: Hashable) -> float | None:
        assert isinstance(key, tuple)
        return await reconciling.timed(KIND, self._reconcile(key))

    async def _reconcile(self, key: Key) -> float | None:  # noqa: PLR0911 (a return per refusal)
        obj = reconciling.live(self.services(key))
        if obj is None:
            # Deleted (or being deleted): nothing of it is kept, its metric series included.
            self.status_writer.forget(key)
            self.expected.pop(key, None)
            self.idle_read.pop(key, None)
            self.gone.pop(key, None)
            self.counted.pop(key, None)
            metrics.forget_inferenceservice(*key)
            return None
        meta = obj["metadata"]
        if self.status_writer.stale(key, meta):
            # Our own write's event reconciles again; the timer is only a safety net.
            return reconciling.STALE_RETRY
        status = obj.get("status") or {}
        owner = Owner(KIND, meta["name"], meta["namespace"], meta["uid"])
        try:
            spec = InferenceServiceSpec.model_validate(obj.get("spec") or {})
        except ValidationError as exc:
            return await self._refuse(key, meta, status, "InvalidSpec", exc.errors()[0]["msg"])
        address = self.config.prometheus_for(spec.rollout.analysis.prometheus_address)
        if address is None:
            # The spec is tenant input: it may only pick one of the admin's Prometheus addresses.
            return await self._refuse(
                key,
                meta,
                status,
                "PrometheusAddressNotAllowed",
                "spec.rollout.analysis.prometheusAddress "
                f"{prometheus.one_line(str(spec.rollout.analysis.prometheus_address))} is not one "
                "of the operator's allowed Prometheus addresses (set by the cluster admin)",
            )
        idle_address = self.config.prometheus_for(
            spec.idle.prometheus_address if spec.idle else None
        )
        if spec.idle is not None and idle_address is None:
            return await self._refuse(
                key,
                meta,
                status,
                "PrometheusAddressNotAllowed",
                "spec.idle.prometheusAddress "
                f"{prometheus.one_line(str(spec.idle.prometheus_address))} is not one of the "
                "operator's allowed Prometheus addresses (set by the cluster admin)",
            )
        if violations := policy.check(spec, self.config.workload_policy):
            # Refused before anything is created; the status and one Event name the fields.
            refused, events = policy.refused(
                status, violations, "Healthy", self.clock(), int(meta.get("generation") or 0)
            )
            retry = await self.status_writer.write(key, meta, status, refused)
            if retry is None:
                reconciling.record(self.kube, obj, events)
            return retry
        deployments, children = self._observe_children(key)
        observed = planner.Observed(
            owner=owner,
            generation=int(meta.get("generation") or 0),
            spec=spec,
            status=status,
            annotations=dict(meta.get("annotations") or {}),
            deployments=deployments,
            staging_failures=tuple(f for f in self.failures(key) if isinstance(f, StagingFailure)),
            now=self.clock(),
            real_time=self.real_clock(),
            usage_refresh=usage.refresh_interval(self.count()),
            staging_image=self.config.staging_image,
            retire_after=dt.timedelta(seconds=self.config.retire_after_seconds),
            routes=await self._routes(spec, owner),
            keda=bool(
                spec.autoscaling
                and spec.autoscaling.metric == "prometheus"
                and await self.kube.has_kind(*KEDA)
            ),
            prometheus_url=self.config.prometheus_url,
            children=children,
            validators=tuple(v for v in self.validators(key) if isinstance(v, ValidatorView)),
            idle=await self._read_idle(key, spec, owner, status, deployments, idle_address),
            **self._observe_pods(key),
        )
        plan = planner.plan(observed)
        if plan.analyze:
            measured = await self._measure(spec, owner, plan.status, address)
            plan = planner.plan(dataclasses.replace(observed, analysis=measured))
        # Children first, then the status that records them: every write is idempotent, so a
        # pass that fails half-way is repaired by the next one, and the status never names a
        # child that was not made.
        try:
            await self._write(key, plan, owner)
        except ChildRejected as exc:
            # The status says why, not what the plan would have made; the pass fails, so the
            # runner tries again later.
            await self._refuse(key, meta, status, "ChildRejected", str(exc))
            reconciling.record(self.kube, obj, [Event("Warning", "ChildRejected", str(exc))])
            raise
        retry = await self.status_writer.write(key, meta, status, plan.status)
        if retry is not None:
            return retry
        self._metered(key, spec, observed, plan)
        reconciling.record(self.kube, obj, plan.events)
        for outcome in plan.outcomes:
            metrics.ROLLOUTS.labels(outcome).inc()
        metrics.CANARY_WEIGHT.labels(owner.namespace, owner.name).set(
            plan.status.get("canaryWeight") or 0
        )
        _validation_metrics(owner, status, plan.status)
        return _sooner(plan.requeue_after, self._expectations_lapse(key))

    def _observe_pods(self, key: Key) -> dict[str, Any]:
        gone = self.gone.get(key, {})
        live = tuple(p for p in self.pods(key) if isinstance(p, MeteredPod) and p.uid not in gone)
        return {
            "gpu_pods": live,
            "gone_pods": tuple(gone.values()),
            "known_pods": self.counted.get(key),
            "prices": self.config.prices,
        }

    def _metered(
        self,
        key: Key,
        spec: InferenceServiceSpec,
        observed: planner.Observed,
        plan: planner.Plan,
    ) -> None:
        """After the status write: the deleted pods it settled are done with, and the
        counters get what it added."""
        gone = self.gone.get(key, {})
        for pod in observed.gone_pods:
            gone.pop(pod.uid, None)
        if not gone:
            self.gone.pop(key, None)
        old, new = observed.status.get("usage") or {}, plan.status.get("usage") or {}
        if new.get("meteredAt") != old.get("meteredAt"):
            self.counted[key] = frozenset(p.uid for p in observed.gpu_pods)
        prices = self.config.prices
        labels = (
            metrics.team_label(spec.team, self.config.teams),
            metrics.team_label(spec.cost_center, self.config.cost_centers),
            KIND,
            prices.key(spec.resources.gpu_type),
        )
        metrics.record_usage(labels, usage.increments(old, new, prices))

    def _observe_children(
        self, key: Key
    ) -> tuple[tuple[DeploymentView, ...], tuple[ChildView, ...]]:
        """Its Deployments and watched children from the caches, with those applied but not yet
        seen so taken as applied (until EXPECTATION_TTL): an expectation is met, and dropped,
        once the cache shows the child as it was applied (a Deployment: at the replicas
        applied; its ready pods are the cache's)."""
        deployments = {d.name: d for d in self.deployments(key) if isinstance(d, DeploymentView)}
        seen = {(c.kind, c.name): c for c in self.children(key) if isinstance(c, ChildView)}
        now = time.monotonic()
        pending: dict[tuple[str, str], tuple[float, Manifest]] = {}
        for ident, (at, manifest) in self.expected.get(key, {}).items():
            if now - at >= EXPECTATION_TTL:
                continue
            kind, name = ident
            if kind == "Deployment":
                found = deployments.get(name)
                applied = deployment_view(manifest)
                if found is not None and found.replicas == applied.replicas:
                    continue
                deployments[name] = dataclasses.replace(
                    applied,
                    ready=found.ready if found else 0,
                    replica_failure=found.replica_failure if found else None,
                )
            elif up_to_date(manifest, seen.get(ident)):
                continue
            else:
                seen[ident] = child_view(manifest)
            pending[ident] = (at, manifest)
        if pending:
            self.expected[key] = pending
        else:
            self.expected.pop(key, None)
        return tuple(deployments.values()), tuple(seen.values())

    def _expectations_lapse(self, key: Key) -> float | None:
        """Seconds until the oldest expectation lapses: then the cache alone is believed."""
        pending = self.expected.get(key)
        if not pending:
            return None
        oldest = min(at for at, _ in pending.values())
        return max(0.5, oldest + EXPECTATION_TTL - time.monotonic())

    async def _write(self, key: Key, plan: planner.Plan, owner: Owner) -> None:
        """The plan's children: applies (Services before the route that names them), then the
        route's weights, then deletions."""
        for manifest in plan.apply:
            try:
                await self.kube.apply(manifest)
            except ApiException as exc:
                if exc.status not in (400, 403, 404, 422):
                    raise
                raise ChildRejected(
                    f"the API server rejected {manifest['kind']} "
                    f"{manifest['metadata']['name']}: {_reason(exc)}"
                ) from exc
            if manifest["kind"] in EXPECTED:
                ident = (manifest["kind"], manifest["metadata"]["name"])
                self.expected.setdefault(key, {})[ident] = (time.monotonic(), manifest)
        for name in plan.adopt:
            await self.kube.merge_patch(
                "apps/v1",
                "Deployment",
                owner.namespace,
                name,
                {"metadata": {"ownerReferences": [owner.reference()]}},
            )
        for name, replicas in plan.scale:
            await self.kube.scale(owner.namespace, name, replicas)
        if plan.route is not None:
            name, rules = plan.route
            await self.kube.merge_patch(
                *HTTPROUTE, owner.namespace, name, {"spec": {"rules": rules}}
            )
        for name in plan.delete:
            await self.kube.delete("apps/v1", "Deployment", owner.namespace, name)
        for api_version, kind, name in plan.remove:
            if (api_version, kind) == KEDA and not await self.kube.has_kind(*KEDA):
                continue  # KEDA uninstalled: its ScaledObjects went with its CRD
            await self.kube.delete(api_version, kind, owner.namespace, name)

    async def _refuse(
        self, key: Key, meta: dict[str, Any], status: dict[str, Any], reason: str, message: str
    ) -> float | None:
        """A spec the operator cannot act on: Healthy=False says why, and nothing is reconciled."""
        new = dict(status)
        set_condition(
            new,
            "Healthy",
            False,
            reason,
            message,
            self.clock(),
            int(meta.get("generation") or 0),
        )
        return await self.status_writer.write(key, meta, status, new)

    async def _routes(self, spec: InferenceServiceSpec, owner: Owner) -> tuple[RouteView, ...]:
        ref = spec.rollout.traffic_routing.http_route
        if ref is None:
            return ()
        found = await self.kube.get(*HTTPROUTE, owner.namespace, ref.name)
        return (route_view(found),) if found else ()

    async def _measure(
        self, spec: InferenceServiceSpec, owner: Owner, status: dict[str, Any], address: str
    ) -> tuple[planner.Measurement, ...]:
        settings = spec.rollout.analysis
        variables = {
            "name": owner.name,
            "namespace": owner.namespace,
            "canary": status.get("canaryRevision") or "",
            "stable": status.get("stableRevision") or "",
        }
        measured = await asyncio.gather(
            *[
                asyncio.to_thread(prometheus.measure, address, metric, variables)
                for metric in settings.metrics
            ]
        )
        for m in measured:
            if m.value is not None:
                metrics.ANALYSIS_VALUE.labels(owner.namespace, owner.name, m.metric.name).set(
                    m.value
                )
            if m.verdict == "Failed":
                metrics.ANALYSIS_FAILURES.labels(owner.namespace, owner.name, m.metric.name).inc()
        return tuple(measured)

    async def _read_idle(
        self,
        key: Key,
        spec: InferenceServiceSpec,
        owner: Owner,
        status: dict[str, Any],
        deployments: tuple[DeploymentView, ...],
        address: str | None,
    ) -> tuple[idle_signals.Reading, ...] | None:
        """Idle reclamation's signals, read at most every hold.IDLE_CHECK seconds, and not
        while held (there are no pods to read); None when not read in this pass."""
        if spec.idle is None or address is None or (status.get("schedule") or {}).get("held"):
            self.idle_read.pop(key, None)
            return None
        now = time.monotonic()
        if now - self.idle_read.get(key, -hold.IDLE_CHECK) < hold.IDLE_CHECK * 0.9:
            return None
        self.idle_read[key] = now
        variables = {"name": owner.name, "namespace": owner.namespace}
        asked = idle_signals.queries(spec.idle, owner.namespace, [d.name for d in deployments])

        async def one(signal: str, query: str | None) -> idle_signals.Reading:
            if query is None:
                return idle_signals.Reading(signal, None, "no pods to read")
            rendered = prometheus.render(query, variables)
            values, error = await asyncio.to_thread(prometheus.read, address, rendered)
            return idle_signals.Reading(signal, values, error)

        return tuple(await asyncio.gather(*(one(s, q) for s, q in asked.items())))


def _validation_metrics(owner: Owner, before: dict[str, Any], after: dict[str, Any]) -> None:
    """A validation stage that ended in this pass: its outcome and figures."""
    was, now = before.get("validation") or {}, after.get("validation") or {}
    if was.get("phase") != "Running" or now.get("phase") not in ("Passed", "Failed"):
        return
    metrics.VALIDATIONS.labels(now["phase"].lower()).inc()
    metrics.record_validation(
        owner.namespace, owner.name, str(now.get("revision") or ""), now.get("results") or []
    )


def _sooner(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


def _reason(exc: ApiException) -> str:
    """The API server's message, in one line."""
    try:
        message = str(json.loads(exc.body)["message"])
    except (TypeError, ValueError, KeyError):
        message = str(exc.reason)
    return " ".join(message.split())[:512]
