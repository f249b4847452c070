"""The InferenceService reconciler: reads the caches, asks the planner (measuring the canary in
Prometheus when the planner says it is time), writes the plan."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from stratus import metrics, reconciling
from stratus.api.inferenceservice import KIND, InferenceServiceSpec
from stratus.conditions import set_condition
from stratus.config import OperatorConfig
from stratus.kube import Kube
from stratus.podspec import Owner
from stratus.serving import builders, planner, prometheus
from stratus.serving.views import DeploymentView, RouteView, StagingFailure, route_view

Key = tuple[str, str]
HTTPROUTE = ("gateway.networking.k8s.io/v1", "HTTPRoute")
KEDA = builders.SCALED_OBJECT
Lookup = Callable[[Key], Iterable[Any]]


@dataclass
class ServingController:
    kube: Kube
    config: OperatorConfig
    services: Lookup
    deployments: Lookup
    failures: Lookup
    keys: Callable[[], Iterable[Key]] = lambda: ()
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)
    status_writer: reconciling.StatusWriter = field(init=False)

    def __post_init__(self) -> None:
        self.status_writer = reconciling.StatusWriter(self.kube, KIND)

    def phases(self) -> dict[str, int]:
        """InferenceServices by phase, for the metrics endpoint."""
        return reconciling.count_phases(self.keys(), self.services)

    async def reconcile(self, key: Hashable) -> float | None:
        assert isinstance(key, tuple)
        return await reconciling.timed(KIND, self._reconcile(key))

    async def _reconcile(self, key: Key) -> float | None:
        obj = reconciling.live(self.services(key))
        if obj is None:
            # Deleted (or being deleted): nothing of it is kept, its metric series included.
            self.status_writer.forget(key)
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
        observed = planner.Observed(
            owner=owner,
            generation=int(meta.get("generation") or 0),
            spec=spec,
            status=status,
            annotations=dict(meta.get("annotations") or {}),
            deployments=tuple(d for d in self.deployments(key) if isinstance(d, DeploymentView)),
            staging_failures=tuple(f for f in self.failures(key) if isinstance(f, StagingFailure)),
            now=self.clock(),
            staging_image=self.config.staging_image,
            retire_after=dt.timedelta(seconds=self.config.retire_after_seconds),
            routes=await self._routes(spec, owner),
            keda=bool(
                spec.autoscaling
                and spec.autoscaling.metric == "prometheus"
                and await self.kube.has_kind(*KEDA)
            ),
            prometheus_url=self.config.prometheus_url,
        )
        plan = planner.plan(observed)
        if plan.analyze:
            measured = await self._measure(spec, owner, plan.status, address)
            plan = planner.plan(dataclasses.replace(observed, analysis=measured))
        retry = await self.status_writer.write(key, meta, status, plan.status)
        if retry is not None:
            return retry
        await self._write(plan, owner)
        reconciling.record(self.kube, obj, plan.events)
        for outcome in plan.outcomes:
            metrics.ROLLOUTS.labels(outcome).inc()
        metrics.CANARY_WEIGHT.labels(owner.namespace, owner.name).set(
            plan.status.get("canaryWeight") or 0
        )
        return plan.requeue_after

    async def _write(self, plan: planner.Plan, owner: Owner) -> None:
        """The plan's children, after the status that records them."""
        if plan.route is not None:
            # Before the status that records it: re-applying the same weights is harmless.
            name, rules = plan.route
            await self.kube.merge_patch(
                *HTTPROUTE, owner.namespace, name, {"spec": {"rules": rules}}
            )
        for manifest in plan.apply:
            await self.kube.apply(manifest)
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
