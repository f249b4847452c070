"""What one planning pass of an InferenceService sees (Observed), what it decides (Plan), and
the working state the step machine and the desired children share while deciding it (Pass),
as Argo Rollouts' rolloutContext. Defined below the planner, which re-exports Observed and Plan,
so that the modules it composes can name them."""

from __future__ import annotations

import copy
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from stratus.api.inferenceservice import InferenceServiceSpec, Step
from stratus.conditions import Event, set_condition
from stratus.cost import usage
from stratus.cost.pods import MeteredPod
from stratus.cost.prices import PriceTable
from stratus.podspec import Manifest, Owner
from stratus.schedules.idle import Reading
from stratus.serving.revision import revision_of
from stratus.serving.validator import ValidatorView
from stratus.serving.verdict import Measurement
from stratus.serving.views import (
    ChildView,
    DeploymentView,
    RouteView,
    StagingFailure,
    up_to_date,
)

Status = dict[str, Any]


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
    # Its validator pods (one per candidate validated), as observed.
    validators: tuple[ValidatorView, ...] = ()
    # Idle reclamation's readings, when they were taken for this pass; None when not.
    idle: tuple[Reading, ...] | None = None
    # Metering: its GPU pods as observed, those seen deleted since the last status write (their
    # last state), and the admin's prices.
    gpu_pods: tuple[MeteredPod, ...] = ()
    gone_pods: tuple[MeteredPod, ...] = ()
    # The pods the last status write counted (uids); None when not known (after a restart).
    known_pods: frozenset[str] | None = None
    prices: PriceTable = field(default_factory=PriceTable)
    # The real time, for metering: pods' start and end times are real, while `now` is the
    # operator's clock, which tests move. None: `now` (a test that does not move the clock).
    real_time: dt.datetime | None = None
    # How often a running workload's usage is refreshed (usage.refresh_interval).
    usage_refresh: float = usage.REFRESH_SECONDS

    @property
    def metered_at(self) -> dt.datetime:
        return self.real_time or self.now


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


class Pass:
    """One pass: the observation, the plan being made, and its status (a copy of the observed
    one, edited in place)."""

    def __init__(self, obs: Observed) -> None:
        self.obs = obs
        self.spec = obs.spec
        self.plan = Plan(status=copy.deepcopy(obs.status))
        self.status = self.plan.status
        self.steps: list[Step] = self.spec.rollout.steps or [Step(weight=100)]
        self.revision = revision_of(self.spec)
        self.deployments = {d.revision: d for d in obs.deployments}
        self.children = {(c.kind, c.name): c for c in obs.children}
        # Replicas every revision is held at (off-hours, idle); None when not held.
        self.held: int | None = None

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
