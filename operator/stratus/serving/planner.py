"""The InferenceService rollout state machine, pure: the spec, the status, the revisions'
Deployments, any commands and analysis results in; the next status, the objects to apply or
delete, and whether to run the analysis out."""

from __future__ import annotations

import copy
import datetime as dt
import math
import re
from dataclasses import dataclass, field
from typing import Any

from stratus.api.inferenceservice import AnalysisMetric, InferenceServiceSpec, Step
from stratus.conditions import Event, parse_time, precise_timestamp, set_condition
from stratus.podspec import Manifest, Owner
from stratus.serving import builders
from stratus.serving.labels import (
    ABORT_ANNOTATION,
    PROMOTE_ANNOTATION,
    PROMOTE_FULL_ANNOTATION,
    RETRY_ANNOTATION,
)
from stratus.serving.revision import revision_of
from stratus.serving.views import DeploymentView, RouteView, StagingFailure

Status = dict[str, Any]
COMMANDS = (PROMOTE_ANNOTATION, PROMOTE_FULL_ANNOTATION, ABORT_ANNOTATION, RETRY_ANNOTATION)


@dataclass(frozen=True)
class Measurement:
    """One analysis metric's value; None when Prometheus returned nothing or NaN."""

    metric: AnalysisMetric
    value: float | None
    error: str = ""

    @property
    def verdict(self) -> str:
        if self.value is None or math.isnan(self.value):
            return "Inconclusive"
        low, high = self.metric.min, self.metric.max
        if (low is not None and self.value < low) or (high is not None and self.value > high):
            return "Failed"
        return "Passed"

    def describe(self) -> str:
        bounds = []
        if self.metric.min is not None:
            bounds.append(f">= {self.metric.min:g}")
        if self.metric.max is not None:
            bounds.append(f"<= {self.metric.max:g}")
        shown = "no data" if self.value is None else f"{self.value:g}"
        return f"{self.metric.name} = {shown} (must be {' and '.join(bounds)})"


@dataclass(frozen=True)
class Observed:
    owner: Owner
    generation: int
    spec: InferenceServiceSpec
    status: Status
    annotations: dict[str, str]
    deployments: tuple[DeploymentView, ...]
    staging_failures: tuple[StagingFailure, ...]
    now: dt.datetime
    staging_image: str
    # How long a replaced stable revision keeps serving after a promotion.
    retire_after: dt.timedelta = dt.timedelta(seconds=30)
    # HTTPRoutes in the namespace, by name (only those the spec may name matter).
    routes: tuple[RouteView, ...] = ()
    # Whether KEDA's ScaledObject resource exists in the cluster.
    keda: bool = False
    prometheus_url: str = ""
    # Results of the analysis the previous plan asked for; None when none was run.
    analysis: tuple[Measurement, ...] | None = None


@dataclass
class Plan:
    status: Status
    apply: list[Manifest] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    # (Deployment name, replicas) for revisions whose full spec is no longer at hand.
    scale: list[tuple[str, int]] = field(default_factory=list)
    # Deployments whose owner reference a person removed: given back to the InferenceService.
    adopt: list[str] = field(default_factory=list)
    # (HTTPRoute name, its new rules): the weights of the traffic split.
    route: tuple[str, list[Manifest]] | None = None
    events: list[Event] = field(default_factory=list)
    outcomes: list[str] = field(default_factory=list)
    analyze: bool = False
    requeue_after: float | None = None

    def later(self, seconds: float) -> None:
        seconds = max(seconds, 0.5)
        if self.requeue_after is None or seconds < self.requeue_after:
            self.requeue_after = seconds


def parse_duration(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * units[u] for n, u in re.findall(r"([0-9.]+)(ms|s|m|h)", text))


class _Planner:
    def __init__(self, obs: Observed) -> None:
        self.obs = obs
        self.spec = obs.spec
        self.plan = Plan(status=copy.deepcopy(obs.status))
        self.status = self.plan.status
        self.steps: list[Step] = self.spec.rollout.steps or [Step(weight=100)]
        self.revision = revision_of(self.spec)
        self.deployments = {d.revision: d for d in obs.deployments}
        handled = self.status.setdefault("handledCommands", {})
        self.commands = {
            c for c in COMMANDS if obs.annotations.get(c) and obs.annotations[c] != handled.get(c)
        }
        for command in self.commands:
            handled[command] = obs.annotations[command]

    def event(self, reason: str, message: str, warning: bool = False) -> None:
        self.plan.events.append(Event("Warning" if warning else "Normal", reason, message))
        self.status["message"] = message

    def condition(self, kind: str, state: bool, reason: str, message: str = "") -> None:
        set_condition(self.status, kind, state, reason, message, self.obs.now, self.obs.generation)

    # -- decisions -------------------------------------------------------------------------
    def run(self) -> Plan:
        self.status["observedGeneration"] = self.obs.generation
        self.status["url"] = builders.service_url(self.obs.owner)
        self.plan.adopt = [d.name for d in self.obs.deployments if not d.owned]
        self.retire()
        stable = self.status.get("stableRevision")
        if stable is None:
            self.status["stableRevision"] = self.revision
            for manifest in (
                builders.build_service(self.obs.owner),
                builders.build_pdb(self.obs.owner),
            ):
                self.plan.apply.append(manifest)
            self.event("Deployed", f"revision {self.revision} deployed as stable")
        elif self.revision not in (stable, self.status.get("canaryRevision")):
            self.new_revision(stable)
        elif self.revision == stable and self.status.get("canaryRevision"):
            self.cancel_canary("the spec returned to the stable revision")
        if self.status.get("canaryRevision"):
            self.canary()
        self.replicas()
        self.route()
        self.autoscaling()
        self.summarize()
        return self.plan

    def new_revision(self, stable: str) -> None:
        if self.revision == self.status.get("abortedRevision") and (
            RETRY_ANNOTATION not in self.commands
        ):
            return
        self.status.pop("abortedRevision", None)
        previous = self.status.get("canaryRevision")
        if previous:
            self.plan.delete.append(builders.deployment_name(self.obs.owner, previous))
            self.event("CanarySuperseded", f"canary {previous} superseded by {self.revision}")
        if self.spec.rollout.strategy == "Recreate":
            self.status["stableRevision"] = self.revision
            self.plan.delete.append(builders.deployment_name(self.obs.owner, stable))
            self.event("Recreated", f"revision {self.revision} replaced {stable}")
            self.clear_canary()
            return
        self.status.update(
            {
                "canaryRevision": self.revision,
                "currentStep": 0,
                "canaryWeight": self.steps[0].weight,
                "stepStartedAt": precise_timestamp(self.obs.now),
                "lastAnalysis": {"failures": 0, "inconclusive": 0, "results": []},
            }
        )
        self.event(
            "CanaryStarted",
            f"revision {self.revision} is a canary at {self.steps[0].weight}% (stable {stable})",
        )

    def canary(self) -> None:
        canary = self.status["canaryRevision"]
        if ABORT_ANNOTATION in self.commands:
            self.abort("aborted by a person")
            return
        if PROMOTE_FULL_ANNOTATION in self.commands:
            self.promote()
            return
        ready = self.canary_ready(canary)
        analysis = self.status.setdefault("lastAnalysis", {"failures": 0, "inconclusive": 0})
        if self.spec.rollout.analysis.metrics and ready and not self.judge(analysis):
            return
        if self.status.get("phase") == "Paused" and PROMOTE_ANNOTATION not in self.commands:
            return
        if self.route_missing():
            return  # the split cannot be applied, so the canary does not advance
        if PROMOTE_ANNOTATION in self.commands or (ready and self.pause_over(analysis)):
            self.advance()

    def canary_ready(self, canary: str) -> bool:
        view = self.deployments.get(canary)
        want = self.split()[0]
        return view is not None and view.ready >= want

    def judge(self, analysis: dict[str, Any]) -> bool:
        """Record and judge a measurement; False when the rollout must stop here."""
        settings = self.spec.rollout.analysis
        interval = parse_duration(settings.interval)
        last = parse_time(analysis.get("time"))
        due = last is None or (self.obs.now - last).total_seconds() >= interval
        if self.obs.analysis is None:
            if due:
                self.plan.analyze = True
            else:
                assert last is not None
                self.plan.later(interval - (self.obs.now - last).total_seconds())
            return True
        measured = self.obs.analysis
        analysis["time"] = precise_timestamp(self.obs.now)
        analysis["results"] = [
            {
                "name": m.metric.name,
                "verdict": m.verdict,
                # JSON has no NaN or infinity: the API server would refuse the whole status.
                **({"value": m.value} if m.value is not None and math.isfinite(m.value) else {}),
            }
            for m in measured
        ]
        failed = [m for m in measured if m.verdict == "Failed"]
        unclear = [m for m in measured if m.verdict == "Inconclusive"]
        analysis["failures"] = analysis.get("failures", 0) + (1 if failed else 0)
        analysis["inconclusive"] = analysis.get("inconclusive", 0) + (1 if unclear else 0)
        analysis["stepMeasured"] = self.status.get("currentStep", 0)
        self.plan.later(interval)
        if failed and analysis["failures"] > settings.failure_limit:
            self.abort("analysis failed: " + "; ".join(m.describe() for m in failed))
            return False
        if unclear and analysis["inconclusive"] > settings.inconclusive_limit:
            self.status["phase"] = "Paused"
            self.event(
                "AnalysisInconclusive",
                "paused for a person: "
                + "; ".join(m.describe() + (f" [{m.error}]" if m.error else "") for m in unclear),
                warning=True,
            )
            return False
        return True

    def pause_over(self, analysis: dict[str, Any]) -> bool:
        step = self.steps[self.status.get("currentStep", 0)]
        started = parse_time(self.status.get("stepStartedAt")) or self.obs.now
        held = (self.obs.now - started).total_seconds()
        if self.spec.rollout.analysis.metrics and analysis.get("stepMeasured") != self.status.get(
            "currentStep", 0
        ):
            return False  # every step is measured at least once
        if step.pause is not None and step.pause.duration is None:
            self.status["phase"] = "Paused"
            self.status["message"] = (
                f"step {self.status.get('currentStep', 0) + 1} waits for `stratus promote`"
            )
            return False
        hold = parse_duration(
            step.pause.duration
            if step.pause and step.pause.duration
            else self.spec.rollout.analysis.interval
        )
        if held < hold:
            self.plan.later(hold - held)
            return False
        return True

    def advance(self) -> None:
        following = self.status.get("currentStep", 0) + 1
        if following >= len(self.steps):
            self.promote()
            return
        weight = self.steps[following].weight
        self.status.update(
            {
                "currentStep": following,
                "canaryWeight": weight,
                "stepStartedAt": precise_timestamp(self.obs.now),
                "phase": "Progressing",
            }
        )
        self.event(
            "StepAdvanced",
            f"canary {self.status['canaryRevision']} at {weight}% "
            f"(step {following + 1} of {len(self.steps)})",
        )

    def promote(self) -> None:
        canary, stable = self.status["canaryRevision"], self.status.get("stableRevision")
        self.status["stableRevision"] = canary
        if stable and stable != canary:
            self.status["retiringRevision"] = stable
            self.status["retireAt"] = precise_timestamp(self.obs.now + self.obs.retire_after)
            self.plan.later(self.obs.retire_after.total_seconds())
        self.clear_canary()
        self.plan.outcomes.append("promoted")
        self.event("Promoted", f"revision {canary} promoted to stable")

    def abort(self, why: str) -> None:
        canary = self.status["canaryRevision"]
        self.status["abortedRevision"] = canary
        self.clear_canary()
        self.status["phase"] = "Degraded"
        self.plan.outcomes.append("aborted")
        self.condition("Healthy", False, "RolledBack", f"canary {canary} rolled back: {why}")
        self.event("RolledBack", f"canary {canary} rolled back: {why}", warning=True)

    def cancel_canary(self, why: str) -> None:
        canary = self.status["canaryRevision"]
        self.plan.delete.append(builders.deployment_name(self.obs.owner, canary))
        self.clear_canary()
        self.event("CanaryCancelled", f"canary {canary} cancelled: {why}")

    def clear_canary(self) -> None:
        for key in ("canaryRevision", "currentStep", "stepStartedAt"):
            self.status.pop(key, None)
        self.status["canaryWeight"] = 0

    def retire(self) -> None:
        retiring = self.status.get("retiringRevision")
        due = parse_time(self.status.get("retireAt"))
        if not retiring or due is None:
            return
        if self.obs.now >= due:
            self.plan.delete.append(builders.deployment_name(self.obs.owner, retiring))
            self.status.pop("retiringRevision")
            self.status.pop("retireAt")
        else:
            self.plan.later((due - self.obs.now).total_seconds())

    # -- desired objects -------------------------------------------------------------------
    def split(self) -> tuple[int, int]:
        """(canary, stable) replicas for the canary's weight. By replica ratio, traffic follows
        ready replicas; with an HTTPRoute the stable keeps its size and the route weighs."""
        total = max(1, self.spec.replicas.min)
        weight = self.status.get("canaryWeight") or 0
        canary = math.ceil(total * weight / 100) if weight else 0
        if self.spec.rollout.traffic_routing.http_route is not None:
            return canary, total
        stable = total - canary if weight >= 100 else max(1, total - canary)
        return canary, stable

    def route_missing(self) -> bool:
        ref = self.spec.rollout.traffic_routing.http_route
        return ref is not None and not any(r.name == ref.name for r in self.obs.routes)

    def route(self) -> None:
        ref = self.spec.rollout.traffic_routing.http_route
        if ref is None:
            return
        found = next((r for r in self.obs.routes if r.name == ref.name), None)
        if found is None:
            self.condition(
                "TrafficRouted",
                False,
                "HTTPRouteNotFound",
                f"HTTPRoute {ref.name} not found in {self.obs.owner.namespace}",
            )
            return
        stable, canary = self.status["stableRevision"], self.status.get("canaryRevision")
        for revision in filter(None, (stable, canary)):
            if revision not in self.deployments:
                self.plan.apply.append(builders.build_revision_service(self.obs.owner, revision))
        rules = builders.weighted_rules(
            list(found.rules), self.obs.owner, stable, canary, self.status.get("canaryWeight") or 0
        )
        if rules != list(found.rules):
            self.plan.route = (ref.name, rules)
        self.condition(
            "TrafficRouted",
            True,
            "WeightsApplied",
            f"HTTPRoute {ref.name}: canary {self.status.get('canaryWeight') or 0}%",
        )

    def autoscaling(self) -> None:
        scaling = self.spec.autoscaling
        if scaling is None or scaling.metric != "prometheus":
            return
        if not self.obs.keda:
            self.condition(
                "Autoscaling",
                False,
                "KEDANotInstalled",
                "autoscaling on a Prometheus query needs KEDA (keda.sh ScaledObject); "
                f"running {self.spec.replicas.min} replicas",
            )
            return
        stable = self.status["stableRevision"]
        if not self.status.get("canaryRevision") and (
            self.obs.status.get("stableRevision") != stable
            or not self.obs.deployments
            or not any(
                c.get("type") == "Autoscaling" and c.get("status") == "True"
                for c in self.obs.status.get("conditions", [])
            )
        ):
            scaled = builders.build_scaled_object(
                self.obs.owner, self.spec, stable, self.obs.prometheus_url
            )
            if scaled is not None:
                self.plan.apply.append(scaled)
        self.condition("Autoscaling", True, "ScaledObject", "KEDA scales the stable revision")

    def replicas(self) -> None:
        owner, spec = self.obs.owner, self.spec
        desired: dict[str, int] = {}
        stable = self.status["stableRevision"]
        canary = self.status.get("canaryRevision")
        canary_replicas, stable_replicas = self.split() if canary else (0, spec.replicas.min)
        desired[stable] = stable_replicas
        if canary:
            desired[canary] = canary_replicas
        aborted = self.status.get("abortedRevision")
        if aborted and aborted in self.deployments:
            desired[aborted] = 0  # kept, scaled down, for inspection
        retiring = self.status.get("retiringRevision")
        if retiring and retiring in self.deployments:
            desired[retiring] = self.deployments[retiring].replicas
        deleted = set(self.plan.delete)
        for revision, count in desired.items():
            name = builders.deployment_name(owner, revision)
            view = self.deployments.get(revision)
            if name in deleted or (view is not None and view.replicas == count):
                continue
            spec_for = spec if revision == self.revision else None
            if spec_for is None and view is None:
                continue  # an old revision whose spec is gone: nothing to recreate it from
            if spec_for is None:
                assert view is not None
                self.plan.scale.append((view.name, count))
            else:
                self.plan.apply.append(
                    builders.build_deployment(
                        owner, spec_for, revision, count, self.obs.staging_image
                    )
                )
        if stable == self.revision and not canary:
            hpa = builders.build_hpa(owner, spec, stable)
            if hpa is not None and (
                self.obs.status.get("stableRevision") != stable or not self.obs.deployments
            ):
                self.plan.apply.append(hpa)

    def summarize(self) -> None:
        failure = next(
            (
                f
                for f in self.obs.staging_failures
                if f.revision in (self.status.get("canaryRevision"), self.status["stableRevision"])
            ),
            None,
        )
        if failure:
            self.condition(
                "ModelStaged",
                False,
                "StagingFailed",
                f"revision {failure.revision}: {failure.message}",
            )
        else:
            self.condition("ModelStaged", True, "Staged", "")
        ready = sum(d.ready for d in self.obs.deployments)
        self.status["readyReplicas"] = ready
        if self.status.get("phase") == "Paused" and self.status.get("canaryRevision"):
            self.condition("Healthy", False, "Paused", self.status.get("message", ""))
            return
        if self.status.get("canaryRevision"):
            self.status["phase"] = "Progressing"
            self.condition(
                "Healthy",
                False,
                "CanaryInProgress",
                f"canary at {self.status.get('canaryWeight', 0)}%",
            )
            return
        if self.status.get("abortedRevision") == self.revision:
            self.status["phase"] = "Degraded"
            return
        stable = self.deployments.get(self.status["stableRevision"])
        healthy = stable is not None and stable.ready >= max(1, self.spec.replicas.min)
        self.status["phase"] = "Healthy" if healthy else "Progressing"
        self.condition(
            "Healthy",
            healthy,
            "StableReady" if healthy else "StableNotReady",
            f"{stable.ready if stable else 0} of {self.spec.replicas.min} replicas "
            "of the stable revision ready",
        )


def plan(obs: Observed) -> Plan:
    return _Planner(obs).run()
