"""The InferenceService rollout state machine, pure: the spec, the status, the revisions'
Deployments, any commands and analysis results in; the next status, the objects to apply or
delete, and whether to run the analysis out.

Who sizes what: without autoscaling the operator owns every revision's replicas (a hand edit is
put back). With autoscaling (an HPA, or a KEDA ScaledObject once KEDA is installed) the stable
revision's Deployment is the autoscaler's: the operator creates it at `replicas.min` and never
applies it again, so `stratus` never takes `spec.replicas` back from the HPA. A canary is sized
from the stable's current size; by replica ratio the stable is scaled down only as canary pods
become ready (`rollout.capacity: Keep`), or at once (`Reduce`), and never when autoscaled."""

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
from stratus.serving.views import (
    ChildView,
    DeploymentView,
    RouteView,
    StagingFailure,
    up_to_date,
)

Status = dict[str, Any]
COMMANDS = (PROMOTE_ANNOTATION, PROMOTE_FULL_ANNOTATION, ABORT_ANNOTATION, RETRY_ANNOTATION)
AUTOSCALING = "Autoscaling"
WEIGHT_EXACT = "WeightExact"
# While KEDA is not installed, look again this often (seconds): the operator's discovery answer
# for an absent kind is as old as this at most (stratus.kube.ABSENT_RECHECK).
KEDA_RECHECK = 10.0
# The Autoscaling condition's reason when true names the autoscaler the operator made.
AUTOSCALERS = {
    "HorizontalPodAutoscaler": builders.HPA,
    "ScaledObject": builders.SCALED_OBJECT,
}


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
    # Its Services, PodDisruptionBudget and HPA as observed (or as just applied).
    children: tuple[ChildView, ...] = ()


@dataclass
class Plan:
    status: Status
    apply: list[Manifest] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    # (Deployment name, replicas) for revisions whose full spec is no longer at hand.
    scale: list[tuple[str, int]] = field(default_factory=list)
    # (apiVersion, kind, name) of other children to delete: an autoscaler no longer asked for.
    remove: list[tuple[str, str, str]] = field(default_factory=list)
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


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


class _Planner:
    def __init__(self, obs: Observed) -> None:
        self.obs = obs
        self.spec = obs.spec
        self.plan = Plan(status=copy.deepcopy(obs.status))
        self.status = self.plan.status
        self.steps: list[Step] = self.spec.rollout.steps or [Step(weight=100)]
        self.revision = revision_of(self.spec)
        self.deployments = {d.revision: d for d in obs.deployments}
        self.children = {(c.kind, c.name): c for c in obs.children}
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

    def want(self, manifest: Manifest) -> None:
        """A child that must exist as `manifest` says: applied when it is missing or differs
        from what is observed (level-triggered: one deleted or edited by hand comes back), and
        not otherwise, so an unchanged child costs no write."""
        key = (manifest["kind"], manifest["metadata"]["name"])
        if not up_to_date(manifest, self.children.get(key)):
            self.plan.apply.append(manifest)

    # -- decisions -------------------------------------------------------------------------
    def run(self) -> Plan:
        self.status["observedGeneration"] = self.obs.generation
        self.status["url"] = builders.service_url(self.obs.owner)
        self.plan.adopt = [d.name for d in self.obs.deployments if not d.owned]
        self.retire()
        stable = self.status.get("stableRevision")
        if stable is None:
            self.status["stableRevision"] = self.revision
            self.event("Deployed", f"revision {self.revision} deployed as stable")
        elif self.revision not in (stable, self.status.get("canaryRevision")):
            self.new_revision(stable)
        elif self.revision == stable and self.status.get("canaryRevision"):
            self.cancel_canary("the spec returned to the stable revision")
        if self.status.get("canaryRevision"):
            self.canary()
        # Every pass: the children that do not depend on the rollout's progress.
        self.want(builders.build_service(self.obs.owner))
        self.want(builders.build_pdb(self.obs.owner))
        self.replicas()
        self.revision_services()
        self.route()
        self.autoscaling()
        self.weights()
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
                "canaryUnreadySince": precise_timestamp(self.obs.now),
                "lastAnalysis": {"failures": 0, "inconclusive": 0, "results": []},
            }
        )
        self.event(
            "CanaryStarted",
            f"revision {self.revision} is a canary at {self.steps[0].weight}% (stable {stable})",
        )

    def canary(self) -> None:
        if ABORT_ANNOTATION in self.commands:
            self.abort("aborted by a person")
            return
        if PROMOTE_FULL_ANNOTATION in self.commands:
            self.promote()
            return
        if self.past_deadline():
            return
        ready = self.in_place()
        analysis = self.status.setdefault("lastAnalysis", {"failures": 0, "inconclusive": 0})
        if (
            self.spec.rollout.analysis.metrics
            and ready
            and not self.judge(analysis)
            and not self.promoted_past_inconclusive(analysis)
        ):
            return
        if self.status.get("phase") == "Paused" and PROMOTE_ANNOTATION not in self.commands:
            return
        if self.route_missing():
            return  # the split cannot be applied, so the canary does not advance
        if PROMOTE_ANNOTATION in self.commands or (ready and self.pause_over(analysis)):
            self.advance()

    def canary_pods(self) -> tuple[int, int]:
        """(ready, wanted): the canary's ready pods, and how many the current step needs."""
        view = self.deployments.get(self.status["canaryRevision"])
        return (view.ready if view else 0), self.split()[0]

    def in_place(self) -> bool:
        """Whether the current step's split stands: every canary pod it needs ready, and the
        stable at its size for the step (so a pause or an analysis sees the step's traffic)."""
        ready, wanted = self.canary_pods()
        if ready < wanted:
            return False
        target = self.stable_target()
        view = self.deployments.get(self.status["stableRevision"])
        return target is None or view is None or view.replicas == target

    def past_deadline(self) -> bool:
        """Rolls the canary back when its pods have not all been ready for longer than
        rollout.progressDeadline: from the start of the step, or since one stopped being ready."""
        ready, wanted = self.canary_pods()
        if ready >= wanted:
            self.status.pop("canaryUnreadySince", None)
            return False
        since = parse_time(self.status.get("canaryUnreadySince"))
        if since is None:
            since = self.obs.now
            self.status["canaryUnreadySince"] = precise_timestamp(since)
        deadline = self.spec.rollout.progress_deadline
        waited = (self.obs.now - since).total_seconds()
        if waited < parse_duration(deadline):
            self.plan.later(parse_duration(deadline) - waited)
            return False
        step = self.status.get("currentStep", 0)
        self.abort(
            f"{ready} of {wanted} canary pods ready after rollout.progressDeadline ({deadline}), "
            f"at step {step + 1} of {len(self.steps)}",
            reason="ProgressDeadlineExceeded",
        )
        return True

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

    def promoted_past_inconclusive(self, analysis: dict[str, Any]) -> bool:
        """A person's `stratus promote` given while the analysis is inconclusive (the judge has
        just paused): they have looked at it, so the step advances, and the inconclusive count
        starts again. A failed analysis rolls back whatever was asked."""
        if PROMOTE_ANNOTATION not in self.commands or self.status.get("phase") != "Paused":
            return False
        if not self.status.get("canaryRevision"):
            return False
        analysis["inconclusive"] = 0
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
        ready, wanted = self.canary_pods()
        if ready < wanted:
            self.status["canaryUnreadySince"] = self.status["stepStartedAt"]
        else:
            self.status.pop("canaryUnreadySince", None)
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

    def abort(self, why: str, reason: str = "RolledBack") -> None:
        canary = self.status["canaryRevision"]
        self.status["abortedRevision"] = canary
        self.clear_canary()
        self.status["phase"] = "Degraded"
        self.plan.outcomes.append("aborted")
        self.condition("Healthy", False, reason, f"canary {canary} rolled back: {why}")
        self.event(reason, f"canary {canary} rolled back: {why}", warning=True)

    def cancel_canary(self, why: str) -> None:
        canary = self.status["canaryRevision"]
        self.plan.delete.append(builders.deployment_name(self.obs.owner, canary))
        self.clear_canary()
        self.event("CanaryCancelled", f"canary {canary} cancelled: {why}")

    def clear_canary(self) -> None:
        for key in ("canaryRevision", "currentStep", "stepStartedAt", "canaryUnreadySince"):
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
    def autoscaled(self) -> bool:
        """Whether an autoscaler sizes the stable revision: an HPA (cpu, memory), or KEDA's
        ScaledObject once KEDA is installed. Then its replicas are set only when it is created."""
        scaling = self.spec.autoscaling
        return scaling is not None and (scaling.metric != "prometheus" or self.obs.keda)

    def base(self) -> int:
        """The stable revision's full size: replicas.min, or with autoscaling the size the
        autoscaler gave it (its Deployment's spec.replicas, now)."""
        view = self.deployments.get(self.status["stableRevision"])
        if self.autoscaled() and view is not None:
            return max(1, view.replicas)
        return max(1, self.spec.replicas.min)

    def split(self) -> tuple[int, int | None]:
        """(canary, stable) replicas once the canary's step is in place; the stable None when
        the autoscaler sizes it. By replica ratio, traffic follows ready replicas: the canary
        takes its weight of the stable's size, and the stable the rest (at least one replica
        before 100%). Beside an autoscaled stable, which the operator never scales down, the
        canary is sized so that it takes its weight of the two together, up to the stable's own
        size (half the traffic). With an HTTPRoute the route weighs, and the stable keeps its
        size."""
        base = self.base()
        weight = self.status.get("canaryWeight") or 0
        routed = self.spec.rollout.traffic_routing.http_route is not None
        stable: int | None = None if self.autoscaled() else base
        if not weight:
            return 0, stable
        if stable is None and not routed and weight < 100:
            return min(base, _ceil_div(base * weight, 100 - weight)), None
        canary = _ceil_div(base * weight, 100)
        if stable is None or routed:
            return canary, stable
        return canary, 0 if weight >= 100 else max(1, base - canary)

    def stable_target(self) -> int | None:
        """The stable's replicas now; None when the autoscaler sizes it. With capacity Keep the
        stable gives up a replica only for a ready canary pod: ready stable and ready canary
        replicas together never fall below the stable's full size."""
        stable = self.split()[1]
        if (
            stable is None
            or not self.status.get("canaryRevision")
            or self.spec.rollout.capacity != "Keep"
        ):
            return stable
        ready, _ = self.canary_pods()
        return max(stable, self.base() - ready)

    def found_route(self) -> RouteView | None:
        ref = self.spec.rollout.traffic_routing.http_route
        return next((r for r in self.obs.routes if ref and r.name == ref.name), None)

    def own_rules(self, route: RouteView) -> bool:
        """Whether the route has a rule to weigh: one of this InferenceService's own (every
        backend one of its Services), or no rule at all (one is added)."""
        return not route.rules or any(builders.own_rule(self.obs.owner, r) for r in route.rules)

    def route_missing(self) -> bool:
        """Whether the split cannot be applied: the spec names an HTTPRoute that is not there,
        or that has no rule of this InferenceService's to weigh."""
        if self.spec.rollout.traffic_routing.http_route is None:
            return False
        found = self.found_route()
        return found is None or not self.own_rules(found)

    def route(self) -> None:
        ref = self.spec.rollout.traffic_routing.http_route
        if ref is None:
            return
        found = self.found_route()
        if found is None:
            self.condition(
                "TrafficRouted",
                False,
                "HTTPRouteNotFound",
                f"HTTPRoute {ref.name} not found in {self.obs.owner.namespace}",
            )
            return
        if not self.own_rules(found):
            # Other rules route other teams' traffic: they are never rewritten.
            self.condition(
                "TrafficRouted",
                False,
                "NoRuleForService",
                f"HTTPRoute {ref.name} has no rule whose backendRefs are all Service "
                f"{self.obs.owner.name} or its revisions' Services; its rules are left as they are",
            )
            return
        stable, canary = self.status["stableRevision"], self.status.get("canaryRevision")
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

    def revision_services(self) -> None:
        """With an HTTPRoute, a Service per serving revision (stable and canary): the backends
        the route weighs. Wanted even while the route is missing, so they are there when it
        comes."""
        if self.spec.rollout.traffic_routing.http_route is None:
            return
        for revision in filter(
            None, (self.status["stableRevision"], self.status.get("canaryRevision"))
        ):
            self.want(builders.build_revision_service(self.obs.owner, revision))

    def replicas(self) -> None:
        owner, spec = self.obs.owner, self.spec
        stable = self.status["stableRevision"]
        canary = self.status.get("canaryRevision")
        desired: dict[str, int | None] = {stable: self.stable_target()}
        if canary:
            desired[canary] = self.split()[0]
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
            if name in deleted:
                continue
            if count is None:
                # The autoscaler's: created at replicas.min, then never applied again. An apply
                # without replicas would not do: where `stratus` is the field's only manager (the
                # HPA writes it only to change it) the API server would reset it to 1.
                if view is None and revision == self.revision:
                    self.plan.apply.append(
                        builders.build_deployment(
                            owner, spec, revision, max(1, spec.replicas.min), self.obs.staging_image
                        )
                    )
                continue
            if view is not None and view.replicas == count:
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

    def autoscaling(self) -> None:
        """The HPA or ScaledObject on the stable revision: the HPA applied whenever the one
        observed differs (or is gone), the ScaledObject when what it says may have changed; one
        no longer asked for is deleted, so that it cannot fight the operator over the replicas
        it owns again."""
        owner, scaling = self.obs.owner, self.spec.autoscaling
        stable = self.status["stableRevision"]
        before = next(
            (c for c in self.obs.status.get("conditions", []) if c.get("type") == AUTOSCALING),
            None,
        )
        made = before.get("reason") if before and before.get("status") == "True" else None
        wanted = None
        if scaling is not None:
            wanted = "ScaledObject" if scaling.metric == "prometheus" else "HorizontalPodAutoscaler"
        if made in AUTOSCALERS and made != wanted:
            self.plan.remove.append((*AUTOSCALERS[made], owner.name))
        if scaling is None or wanted is None:
            self.status["conditions"] = [
                c for c in self.status.get("conditions", []) if c["type"] != AUTOSCALING
            ]
            return
        if scaling.metric == "prometheus" and not self.obs.keda:
            self.condition(
                AUTOSCALING,
                False,
                "KEDANotInstalled",
                "autoscaling on a Prometheus query needs KEDA (keda.sh ScaledObject); "
                f"running {self.spec.replicas.min} replicas",
            )
            # So KEDA installed later is noticed without a change to the spec.
            self.plan.later(KEDA_RECHECK)
            return
        if wanted == "HorizontalPodAutoscaler":
            hpa = builders.build_hpa(owner, self.spec, stable)
            if hpa is not None:
                self.want(hpa)  # compared with the HPA observed, every pass
        elif (
            # ScaledObjects are not watched (KEDA may come and go): applied when what it says
            # may have changed (a new stable, a new spec, a new autoscaler).
            made != wanted
            or self.obs.status.get("stableRevision") != stable
            or self.obs.status.get("observedGeneration") != self.obs.generation
            or not self.obs.deployments
        ):
            scaled = builders.build_scaled_object(owner, self.spec, stable, self.obs.prometheus_url)
            if scaled is not None:
                self.plan.apply.append(scaled)
        who = "KEDA" if wanted == "ScaledObject" else f"an HPA on {scaling.metric}"
        self.condition(
            AUTOSCALING,
            True,
            wanted,
            f"{who} scales the stable revision from {self.spec.replicas.min} to "
            f"{self.spec.replicas.max} replicas; the operator sets them only on creation",
        )

    def weights(self) -> None:
        """canaryWeightAchieved, from ready replicas; and, by replica ratio, whether the step's
        weight can be had at all (WeightExact), and if not which weight can and why."""
        canary = self.status.get("canaryRevision")
        routed = self.spec.rollout.traffic_routing.http_route is not None
        weight = self.status.get("canaryWeight") or 0
        achieved = 0
        if canary:
            ready, _ = self.canary_pods()
            if routed:
                achieved = weight if ready and not self.route_missing() else 0
            else:
                view = self.deployments.get(self.status["stableRevision"])
                total = ready + (view.ready if view else 0)
                achieved = round(100 * ready / total) if total else 0
        self.status["canaryWeightAchieved"] = achieved
        if not canary or routed:
            self.status["conditions"] = [
                c for c in self.status.get("conditions", []) if c["type"] != WEIGHT_EXACT
            ]
            return
        base = self.base()
        pods, stable = self.split()
        beside = base if stable is None else stable
        share = round(100 * pods / (pods + beside))
        if share == weight:
            self.condition(
                WEIGHT_EXACT,
                True,
                "ExactSplit",
                f"{pods} canary and {beside} stable replicas: {weight}%",
            )
        elif stable is None:
            self.condition(
                WEIGHT_EXACT,
                False,
                "ReplicaRatio",
                f"{weight}% asked, {share}% achievable: the autoscaled stable keeps its {base} "
                f"replicas, and {pods} canary replicas beside them take {share}% (at most the "
                "stable's size, half the traffic); an HTTPRoute gives exact weights",
            )
        else:
            self.condition(
                WEIGHT_EXACT,
                False,
                "ReplicaRatio",
                f"{weight}% asked, {share}% achievable: {base} replicas split as {pods} canary "
                f"and {stable} stable (the canary rounds up to whole replicas, the stable keeps "
                "one until 100%); more replicas or an HTTPRoute give finer weights",
            )

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
        # With autoscaling, of the autoscaler's count; healthy from replicas.min up.
        size = stable.replicas if stable and self.autoscaled() else self.spec.replicas.min
        self.status["phase"] = "Healthy" if healthy else "Progressing"
        self.condition(
            "Healthy",
            healthy,
            "StableReady" if healthy else "StableNotReady",
            f"{stable.ready if stable else 0} of {size} replicas of the stable revision ready",
        )


def plan(obs: Observed) -> Plan:
    return _Planner(obs).run()
