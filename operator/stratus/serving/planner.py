"""The InferenceService rollout, pure: the spec, the status, the revisions' Deployments and
other children, any commands and analysis results in; the next status, the objects to apply or
delete, and whether to run the analysis out. Composed as Argo Rollouts separates its canary
logic: the step machine (`steps`) moves the canary on, judging the analysis (`verdict`); then
every desired child (`children`) is computed from the status it left; then the status is
summed up."""

from __future__ import annotations

from typing import Any

from stratus.conditions import Event
from stratus.cost import usage
from stratus.serving import builders, children, hold
from stratus.serving.context import Observed, Pass, Plan
from stratus.serving.steps import Steps
from stratus.serving.verdict import Measurement

__all__ = ["Measurement", "Observed", "Plan", "plan"]

PODS_NOT_CREATED = "PodsNotCreated"


def plan(obs: Observed) -> Plan:
    p = Pass(obs)
    hold.decide(p)
    # While held, the rollout stands still: its commands are taken once it is released.
    machine = Steps(p) if p.held is None or "stableRevision" not in obs.status else None
    p.status["observedGeneration"] = obs.generation
    p.status["url"] = builders.service_url(obs.owner)
    p.plan.adopt = [d.name for d in obs.deployments if not d.owned]
    if machine is not None:
        machine.run()
    children.want_all(p)
    _summarize(p)
    _pods_not_created(p)
    _meter(p)
    return p.plan


def _meter(p: Pass) -> None:
    """status.usage: GPU time of every revision's pods, the canary's included."""
    obs = p.obs
    wait = usage.meter_pods(
        obs.status.get("usage"),
        p.status,
        obs.gpu_pods,
        obs.gone_pods,
        obs.prices,
        p.spec.resources.gpu_type,
        obs.metered_at,
        obs.known_pods,
        obs.usage_refresh,
    )
    if wait is not None:
        p.plan.later(wait)


def _summarize(p: Pass) -> None:
    status = p.status
    failure = next(
        (
            f
            for f in p.obs.staging_failures
            if f.revision in (status.get("canaryRevision"), status["stableRevision"])
        ),
        None,
    )
    if failure:
        p.condition(
            "ModelStaged",
            False,
            "StagingFailed",
            f"revision {failure.revision}: {failure.message}",
        )
    else:
        p.condition("ModelStaged", True, "Staged", "")
    status["readyReplicas"] = sum(d.ready for d in p.obs.deployments)
    if p.held is not None:
        _held(p)
        return
    if status.get("phase") == "Paused" and status.get("canaryRevision"):
        p.condition("Healthy", False, "Paused", status.get("message", ""))
        return
    if status.get("canaryRevision"):
        status["phase"] = "Progressing"
        p.condition(
            "Healthy",
            False,
            "CanaryInProgress",
            f"canary at {status.get('canaryWeight', 0)}%",
        )
        return
    if status.get("abortedRevision") == p.revision:
        status["phase"] = "Degraded"
        return
    stable = p.deployments.get(status["stableRevision"])
    healthy = stable is not None and stable.ready >= max(1, p.spec.replicas.min)
    # With autoscaling, of the autoscaler's count; healthy from replicas.min up.
    size = stable.replicas if stable and children.autoscaled(p) else p.spec.replicas.min
    status["phase"] = "Healthy" if healthy else "Progressing"
    p.condition(
        "Healthy",
        healthy,
        "StableReady" if healthy else "StableNotReady",
        f"{stable.ready if stable else 0} of {size} replicas of the stable revision ready",
    )


def _held(p: Pass) -> None:
    """Held by off-hours or idle reclamation: at zero on purpose (ScaledDown), or at a floor,
    healthy once the floor is ready."""
    held = p.held or 0
    record = p.status.get("schedule") or {}
    stable = p.deployments.get(p.status["stableRevision"])
    ready = stable.ready if stable else 0
    healthy = held > 0 and ready >= held
    p.status["phase"] = "ScaledDown" if held == 0 else "Healthy" if healthy else "Progressing"
    p.condition("Healthy", healthy, record.get("reason", ""), record.get("message", ""))


def _pods_not_created(p: Pass) -> None:
    """A revision that is not all there because its ReplicaSet cannot create pods (a quota,
    admission, a missing PriorityClass) says why, with a Warning Event once per distinct
    reason. It clears with the Deployment's ReplicaFailure condition. A rollback (Degraded)
    keeps its own reason; a stable that is healthy stays so."""
    status = p.status
    if status.get("phase") == "Degraded" or _healthy(status).get("status") == "True":
        return
    for revision in (status.get("canaryRevision"), status.get("stableRevision")):
        deployment = p.deployments.get(revision or "")
        if deployment is None or not deployment.replica_failure:
            continue
        message = f"revision {revision} cannot create pods: {deployment.replica_failure}"
        p.condition("Healthy", False, PODS_NOT_CREATED, message)
        before = _healthy(p.obs.status)
        if (before.get("reason"), before.get("message")) != (PODS_NOT_CREATED, message):
            p.plan.events.append(Event("Warning", PODS_NOT_CREATED, message))
        return


def _healthy(status: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = next(
        (c for c in status.get("conditions") or [] if c["type"] == "Healthy"), {}
    )
    return found
