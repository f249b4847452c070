"""The desired children of an InferenceService, pure, computed on every pass from the spec, the
status and the children observed (level-triggered): its Service, a Service per serving revision,
the PodDisruptionBudget, the HPA or KEDA ScaledObject, each revision's Deployment size and the
HTTPRoute's weights; and the sizes of the split the step machine waits on.

Who sizes what: without autoscaling the operator owns every revision's replicas (a hand edit is
put back). With autoscaling (an HPA, or a KEDA ScaledObject once KEDA is installed) the stable
revision's Deployment is the autoscaler's: the operator creates it at `replicas.min` and never
applies it again, so `stratus` never takes `spec.replicas` back from the HPA. A canary is sized
from the stable's current size; by replica ratio the stable is scaled down only as canary pods
become ready (`rollout.capacity: Keep`), or at once (`Reduce`), and never when autoscaled."""

from __future__ import annotations

from stratus.serving import builders, validator
from stratus.serving.context import Pass
from stratus.serving.labels import INFERENCESERVICE_LABEL, REVISION_LABEL, VALIDATOR_LABEL
from stratus.serving.validator import ValidatorView
from stratus.serving.views import RouteView

AUTOSCALING = "Autoscaling"
KEDA_PAUSED = "autoscaling.keda.sh/paused-replicas"
WEIGHT_EXACT = "WeightExact"
# While KEDA is not installed, look again this often (seconds): the operator's discovery answer
# for an absent kind is as old as this at most (stratus.kube.ABSENT_RECHECK).
KEDA_RECHECK = 10.0
# The Autoscaling condition's reason when true names the autoscaler the operator made.
AUTOSCALERS = {
    "HorizontalPodAutoscaler": builders.HPA,
    "ScaledObject": builders.SCALED_OBJECT,
}


def want_all(p: Pass) -> None:
    """Every child, on every pass, as the status the step machine left says."""
    selector = _selector(p)
    p.want(builders.build_service(p.obs.owner, selector, proxy=VALIDATOR_LABEL in (selector or {})))
    p.want(builders.build_pdb(p.obs.owner))
    _replicas(p)
    _revision_services(p)
    _validator(p)
    _route(p)
    _autoscaling(p)
    _weights(p)


# -- sizes ---------------------------------------------------------------------------------------
def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def autoscaled(p: Pass) -> bool:
    """Whether an autoscaler sizes the stable revision: an HPA (cpu, memory), or KEDA's
    ScaledObject once KEDA is installed. Then its replicas are set only when it is created."""
    scaling = p.spec.autoscaling
    return scaling is not None and (scaling.metric != "prometheus" or p.obs.keda)


def base(p: Pass) -> int:
    """The stable revision's full size: replicas.min, or with autoscaling the size the
    autoscaler gave it (its Deployment's spec.replicas, now)."""
    view = p.deployments.get(p.status["stableRevision"])
    if autoscaled(p) and view is not None:
        return max(1, view.replicas)
    return max(1, p.spec.replicas.min)


def split(p: Pass) -> tuple[int, int | None]:
    """(canary, stable) replicas once the canary's step is in place; the stable None when
    the autoscaler sizes it. By replica ratio, traffic follows ready replicas: the canary
    takes its weight of the stable's size, and the stable the rest (at least one replica
    before 100%). Beside an autoscaled stable, which the operator never scales down, the
    canary is sized so that it takes its weight of the two together, up to the stable's own
    size (half the traffic). With an HTTPRoute the route weighs, and the stable keeps its
    size."""
    size = base(p)
    weight = p.status.get("canaryWeight") or 0
    routed = p.spec.rollout.traffic_routing.http_route is not None
    stable: int | None = None if autoscaled(p) else size
    if not weight:
        validation = p.spec.rollout.validation
        return (validation.replicas if validation and validating(p) else 0), stable
    if stable is None and not routed and weight < 100:
        return min(size, _ceil_div(size * weight, 100 - weight)), None
    canary = _ceil_div(size * weight, 100)
    if stable is None or routed:
        return canary, stable
    return canary, 0 if weight >= 100 else max(1, size - canary)


def canary_pods(p: Pass) -> tuple[int, int]:
    """(ready, wanted): the canary's ready pods, and how many the current step needs."""
    view = p.deployments.get(p.status["canaryRevision"])
    return (view.ready if view else 0), split(p)[0]


def stable_target(p: Pass) -> int | None:
    """The stable's replicas now; None when the autoscaler sizes it. With capacity Keep the
    stable gives up a replica only for a ready canary pod: ready stable and ready canary
    replicas together never fall below the stable's full size."""
    stable = split(p)[1]
    if stable is None or not p.status.get("canaryRevision") or p.spec.rollout.capacity != "Keep":
        return stable
    ready, _ = canary_pods(p)
    return max(stable, base(p) - ready)


def _desired(p: Pass, stable: str) -> dict[str, int | None]:
    """Each revision's replicas; None for the autoscaler's. Held, every revision is at zero
    but the stable, at the floor."""
    canary = p.status.get("canaryRevision")
    desired: dict[str, int | None] = {stable: stable_target(p)}
    if canary:
        desired[canary] = split(p)[0]
    aborted = p.status.get("abortedRevision")
    if aborted and aborted in p.deployments:
        desired[aborted] = 0  # kept, scaled down, for inspection
    retiring = p.status.get("retiringRevision")
    if retiring and retiring in p.deployments:
        desired[retiring] = p.deployments[retiring].replicas
    if p.held is not None:
        desired = dict.fromkeys(desired, 0)
        desired[stable] = None if autoscaled(p) else p.held
    return desired


def _replicas(p: Pass) -> None:
    owner, spec = p.obs.owner, p.spec
    stable = p.status["stableRevision"]
    desired = _desired(p, stable)
    if autoscaled(p):
        _autoscaled_stable(p, stable)
    deleted = set(p.plan.delete)
    for revision, count in desired.items():
        name = builders.deployment_name(owner, revision)
        view = p.deployments.get(revision)
        if name in deleted:
            continue
        if count is None:
            # The autoscaler's: created at replicas.min, then never applied again. An apply
            # without replicas would not do: where `stratus` is the field's only manager (the
            # HPA writes it only to change it) the API server would reset it to 1.
            if view is None and revision == p.revision:
                p.plan.apply.append(
                    builders.build_deployment(
                        owner, spec, revision, max(1, spec.replicas.min), p.obs.staging_image
                    )
                )
            continue
        if view is not None and view.replicas == count:
            continue
        spec_for = spec if revision == p.revision else None
        if spec_for is None and view is None:
            continue  # an old revision whose spec is gone: nothing to recreate it from
        if spec_for is None:
            assert view is not None
            p.plan.scale.append((view.name, count))
        else:
            p.plan.apply.append(
                builders.build_deployment(owner, spec_for, revision, count, p.obs.staging_image)
            )


def _autoscaled_stable(p: Pass, stable: str) -> None:
    """The autoscaled stable's size through a hold, without fighting its autoscaler. Held at a
    floor, the autoscaler itself keeps it there (the HPA's min and max, KEDA's paused-replicas:
    see _autoscaling). Held at zero, the Deployment is scaled to zero, where an HPA stops
    acting (it never scales from zero). Found at zero outside a hold, or held at a floor
    above zero (woken from idle in off-hours), it is brought back once, to replicas.min or
    the floor, which the autoscaler then takes from."""
    view = p.deployments.get(stable)
    if view is None or p.spec.autoscaling is None or p.spec.autoscaling.metric == "prometheus":
        return
    if p.held == 0 and view.replicas != 0:
        p.plan.scale.append((view.name, 0))
    elif p.held != 0 and view.replicas == 0:
        floor = p.spec.replicas.min if p.held is None else p.held
        p.plan.scale.append((view.name, max(1, floor)))


# -- traffic -------------------------------------------------------------------------------------
def _found_route(p: Pass) -> RouteView | None:
    ref = p.spec.rollout.traffic_routing.http_route
    return next((r for r in p.obs.routes if ref and r.name == ref.name), None)


def _own_rules(p: Pass, route: RouteView) -> bool:
    """Whether the route has a rule to weigh: one of this InferenceService's own (every
    backend one of its Services), or no rule at all (one is added)."""
    return not route.rules or any(builders.own_rule(p.obs.owner, r) for r in route.rules)


def route_missing(p: Pass) -> bool:
    """Whether the split cannot be applied: the spec names an HTTPRoute that is not there,
    or that has no rule of this InferenceService's to weigh."""
    if p.spec.rollout.traffic_routing.http_route is None:
        return False
    found = _found_route(p)
    return found is None or not _own_rules(p, found)


def _route(p: Pass) -> None:
    ref = p.spec.rollout.traffic_routing.http_route
    if ref is None:
        return
    found = _found_route(p)
    if found is None:
        p.condition(
            "TrafficRouted",
            False,
            "HTTPRouteNotFound",
            f"HTTPRoute {ref.name} not found in {p.obs.owner.namespace}",
        )
        return
    if not _own_rules(p, found):
        # Other rules route other teams' traffic: they are never rewritten.
        p.condition(
            "TrafficRouted",
            False,
            "NoRuleForService",
            f"HTTPRoute {ref.name} has no rule whose backendRefs are all Service "
            f"{p.obs.owner.name} or its revisions' Services; its rules are left as they are",
        )
        return
    stable, canary = p.status["stableRevision"], p.status.get("canaryRevision")
    weight = p.status.get("canaryWeight") or 0
    routed = route_weight(p)
    rules = builders.weighted_rules(list(found.rules), p.obs.owner, stable, canary, routed)
    if rules != list(found.rules):
        p.plan.route = (ref.name, rules)
    message = f"HTTPRoute {ref.name}: canary {routed}%"
    if routed != weight:
        ready, wanted = canary_pods(p)
        message += f"; {weight}% once the canary has {wanted} ready pods ({ready} now)"
    p.condition("TrafficRouted", True, "WeightsApplied", message)


def route_weight(p: Pass) -> int:
    """The canary's weight on the route: the step's once the canary has every pod the step
    needs ready, the previous step's until then (those pods were ready to get here), so that
    no request is sent to a Service without the pods to answer it."""
    weight = p.status.get("canaryWeight") or 0
    if p.held is not None:
        return 0  # held, the canary has no pods
    if not p.status.get("canaryRevision"):
        return weight
    ready, wanted = canary_pods(p)
    if ready >= wanted:
        return weight
    step = p.status.get("currentStep") or 0
    return min(weight, p.steps[step - 1].weight) if 0 < step <= len(p.steps) else 0


def _revision_services(p: Pass) -> None:
    """With an HTTPRoute, a Service per serving revision (stable and canary): the backends
    the route weighs. Wanted even while the route is missing, so they are there when it
    comes. While a candidate is validated, the two Services the validator calls; without an
    HTTPRoute they are deleted once the stage is over."""
    owner = p.obs.owner
    wanted: set[str] = set()
    if p.spec.rollout.traffic_routing.http_route is not None or validating(p):
        for revision in filter(None, (p.status["stableRevision"], p.status.get("canaryRevision"))):
            p.want(builders.build_revision_service(owner, revision))
            wanted.add(builders.revision_service_name(owner, revision))
    if p.spec.rollout.traffic_routing.http_route is not None:
        return
    for kind, name in p.children:
        if kind == "Service" and name not in wanted and builders.is_revision_service(owner, name):
            p.plan.remove.append(("v1", "Service", name))


# -- validation ----------------------------------------------------------------------------------
def validating(p: Pass) -> bool:
    """Whether the canary is in its validation stage (before any live traffic)."""
    record = p.status.get("validation") or {}
    canary = p.status.get("canaryRevision")
    return bool(canary) and record.get("phase") == "Running" and record.get("revision") == canary


def validator_of(p: Pass) -> ValidatorView | None:
    canary = p.status.get("canaryRevision")
    return next((v for v in p.obs.validators if v.revision == canary), None)


def _selector(p: Pass) -> dict[str, str] | None:
    """The Service's selector: every revision's pods; while a candidate is validated, the
    stable's only (the candidate gets no live traffic), or the shadow proxy's once it serves."""
    if not validating(p):
        return None
    found = validator_of(p)
    if found is not None and found.ready:
        return validator.proxy_selector(p.obs.owner, found.revision)
    return {INFERENCESERVICE_LABEL: p.obs.owner.name, REVISION_LABEL: p.status["stableRevision"]}


def _address(p: Pass, revision: str) -> str | None:
    """A revision Service's base URL, by its cluster IP: the validator needs no cluster DNS."""
    found = p.children.get(("Service", builders.revision_service_name(p.obs.owner, revision)))
    ip = found.spec.get("clusterIP") if found else None
    return f"http://{ip}:{builders.SERVICE_PORT}" if ip and ip != "None" else None


def _validator(p: Pass) -> None:
    """The validator Job while the stage runs and has not reported, once both revisions'
    Services have their addresses; removed (with its pod) in every other pass."""
    owner, canary = p.obs.owner, p.status.get("canaryRevision")
    found = validator_of(p)
    if validating(p) and canary and (found is None or found.report is None):
        candidate, stable = _address(p, canary), _address(p, p.status["stableRevision"])
        ready, wanted = canary_pods(p)
        if candidate and stable and found is None and ready >= wanted:
            p.plan.apply.append(
                validator.build_job(owner, p.spec, canary, p.obs.staging_image, candidate, stable)
            )
        return
    for view in p.obs.validators:
        if not view.terminating:
            p.plan.remove.append(("batch/v1", "Job", validator.job_name(owner, view.revision)))


def _weights(p: Pass) -> None:
    """canaryWeightAchieved, from ready replicas; and, by replica ratio, whether the step's
    weight can be had at all (WeightExact), and if not which weight can and why."""
    canary = p.status.get("canaryRevision")
    routed = p.spec.rollout.traffic_routing.http_route is not None
    weight = p.status.get("canaryWeight") or 0
    achieved = 0
    if canary:
        ready, _ = canary_pods(p)
        if routed:
            achieved = route_weight(p) if ready and not route_missing(p) else 0
        else:
            view = p.deployments.get(p.status["stableRevision"])
            total = ready + (view.ready if view else 0)
            achieved = round(100 * ready / total) if total else 0
    p.status["canaryWeightAchieved"] = achieved
    if not canary or routed:
        p.status["conditions"] = [
            c for c in p.status.get("conditions", []) if c["type"] != WEIGHT_EXACT
        ]
        return
    size = base(p)
    pods, stable = split(p)
    beside = size if stable is None else stable
    share = round(100 * pods / (pods + beside))
    if share == weight:
        p.condition(
            WEIGHT_EXACT,
            True,
            "ExactSplit",
            f"{pods} canary and {beside} stable replicas: {weight}%",
        )
    elif stable is None:
        p.condition(
            WEIGHT_EXACT,
            False,
            "ReplicaRatio",
            f"{weight}% asked, {share}% achievable: the autoscaled stable keeps its {size} "
            f"replicas, and {pods} canary replicas beside them take {share}% (at most the "
            "stable's size, half the traffic); an HTTPRoute gives exact weights",
        )
    else:
        p.condition(
            WEIGHT_EXACT,
            False,
            "ReplicaRatio",
            f"{weight}% asked, {share}% achievable: {size} replicas split as {pods} canary "
            f"and {stable} stable (the canary rounds up to whole replicas, the stable keeps "
            "one until 100%); more replicas or an HTTPRoute give finer weights",
        )


# -- autoscaling ---------------------------------------------------------------------------------
def _autoscaling(p: Pass) -> None:
    """The HPA or ScaledObject on the stable revision: the HPA applied whenever the one
    observed differs (or is gone), the ScaledObject when what it says may have changed; one
    no longer asked for is deleted, so that it cannot fight the operator over the replicas
    it owns again."""
    owner, scaling = p.obs.owner, p.spec.autoscaling
    stable = p.status["stableRevision"]
    before = next(
        (c for c in p.obs.status.get("conditions", []) if c.get("type") == AUTOSCALING),
        None,
    )
    made = before.get("reason") if before and before.get("status") == "True" else None
    wanted = None
    if scaling is not None:
        wanted = "ScaledObject" if scaling.metric == "prometheus" else "HorizontalPodAutoscaler"
    if made in AUTOSCALERS and made != wanted:
        p.plan.remove.append((*AUTOSCALERS[made], owner.name))
    if scaling is None or wanted is None:
        p.status["conditions"] = [
            c for c in p.status.get("conditions", []) if c["type"] != AUTOSCALING
        ]
        return
    if scaling.metric == "prometheus" and not p.obs.keda:
        p.condition(
            AUTOSCALING,
            False,
            "KEDANotInstalled",
            "autoscaling on a Prometheus query needs KEDA (keda.sh ScaledObject); "
            f"running {p.spec.replicas.min} replicas",
        )
        # So KEDA installed later is noticed without a change to the spec.
        p.plan.later(KEDA_RECHECK)
        return
    held = bool((p.obs.status.get("schedule") or {}).get("held")), p.held is not None
    if wanted == "HorizontalPodAutoscaler":
        hpa = builders.build_hpa(owner, p.spec, stable)
        if hpa is not None and p.held:
            hpa["spec"]["minReplicas"] = hpa["spec"]["maxReplicas"] = p.held
        if hpa is not None:
            p.want(hpa)  # compared with the HPA observed, every pass
    elif (
        # ScaledObjects are not watched (KEDA may come and go): applied when what it says
        # may have changed (a new stable, a new spec, a new autoscaler, a hold).
        made != wanted
        or p.obs.status.get("stableRevision") != stable
        or p.obs.status.get("observedGeneration") != p.obs.generation
        or not p.obs.deployments
        or held[0] != held[1]
    ):
        scaled = builders.build_scaled_object(owner, p.spec, stable, p.obs.prometheus_url)
        if scaled is not None and p.held is not None:
            # KEDA scales the target to this and stops acting until the annotation goes.
            scaled["metadata"].setdefault("annotations", {})[KEDA_PAUSED] = str(p.held)
        if scaled is not None:
            p.plan.apply.append(scaled)
    who = "KEDA" if wanted == "ScaledObject" else f"an HPA on {scaling.metric}"
    p.condition(
        AUTOSCALING,
        True,
        wanted,
        f"{who} scales the stable revision from {p.spec.replicas.min} to "
        f"{p.spec.replicas.max} replicas; the operator sets them only on creation",
    )
