"""The rollout without a cluster: analysis verdicts, limits, pauses, splits, an HTTPRoute's
weights per step, and which autoscaler."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
from typing import Any

from stratus.api.inferenceservice import AnalysisMetric, InferenceServiceSpec
from stratus.podspec import Owner
from stratus.serving import planner
from stratus.serving.revision import revision_of
from stratus.serving.views import ChildView, DeploymentView, RouteView, child_view, route_view

NOW = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
OWNER = Owner("InferenceService", "web", "ns", "uid")
ERRORS = AnalysisMetric(name="errors", query="rate(x[1m])", max=0.01)


def spec(
    image: str = "serve:1",
    replicas: dict[str, int] | None = None,
    autoscaling: dict[str, Any] | None = None,
    **rollout: Any,
) -> InferenceServiceSpec:
    return InferenceServiceSpec.model_validate(
        {
            "image": image,
            "model": {"uri": "https://m/x"},
            "replicas": replicas or {"min": 10, "max": 10},
            **({"autoscaling": autoscaling} if autoscaling else {}),
            "rollout": {
                "steps": [{"weight": 20, "pause": {"duration": "1m"}}, {"weight": 100}],
                "analysis": {
                    "interval": "30s",
                    "failureLimit": 1,
                    "metrics": [ERRORS.model_dump(by_alias=True, exclude_none=True)],
                },
                **rollout,
            },
        }
    )


def observe(
    s: InferenceServiceSpec,
    status: dict[str, Any],
    ready: dict[str, int],
    now: dt.datetime = NOW,
    sizes: dict[str, int] | None = None,
    **extra: Any,
) -> planner.Observed:
    """`ready` pods by revision; each Deployment's spec.replicas is `sizes` where given, else
    its ready count."""
    sizes = sizes or {}
    views = tuple(DeploymentView(f"web-{r}", r, sizes.get(r, n), n) for r, n in ready.items())
    return planner.Observed(
        owner=OWNER,
        generation=1,
        spec=s,
        status=status,
        annotations=extra.pop("annotations", {}),
        deployments=views,
        staging_failures=(),
        now=now,
        staging_image="img",
        **extra,
    )


def sized(plan: planner.Plan) -> dict[str, int]:
    """The Deployments the plan sizes (applied or scaled), by name."""
    applied = {
        m["metadata"]["name"]: m["spec"]["replicas"]
        for m in plan.apply
        if m["kind"] == "Deployment"
    }
    return {**applied, **dict(plan.scale)}


def made(*plans: planner.Plan) -> tuple[ChildView, ...]:
    """The Services, PDBs and HPAs these plans applied, as the caches then see them (the last
    plan's version of each)."""
    kinds = {"Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"}
    found = {
        (m["kind"], m["metadata"]["name"]): child_view(m)
        for p in plans
        for m in p.apply
        if m["kind"] in kinds
    }
    return tuple(found.values())


def canary_status() -> tuple[InferenceServiceSpec, dict[str, Any], str, str]:
    old, new = spec("serve:1"), spec("serve:2")
    stable = planner.plan(observe(old, {}, {})).status
    status = planner.plan(observe(new, stable, {revision_of(old): 10})).status
    return new, status, revision_of(old), revision_of(new)


def test_a_new_revision_starts_a_canary_split_by_replicas() -> None:
    new, status, stable, canary = canary_status()
    assert (status["canaryRevision"], status["canaryWeight"], status["currentStep"]) == (
        canary,
        20,
        0,
    )
    plan = planner.plan(observe(new, status, {stable: 10}))
    assert sized(plan) == {f"web-{canary}": 2}
    # The stable gives up replicas only for ready canary pods (capacity Keep).
    plan = planner.plan(observe(new, status, {stable: 10, canary: 2}))
    assert sized(plan) == {f"web-{stable}": 8}


def test_analysis_is_asked_for_when_due_and_judged_against_bounds() -> None:
    new, status, stable, canary = canary_status()
    ready = {stable: 8, canary: 2}
    first = planner.plan(observe(new, status, ready))
    assert first.analyze
    failing = (planner.Measurement(ERRORS, 0.2),)
    once = planner.plan(observe(new, status, ready, analysis=failing)).status
    assert once["lastAnalysis"]["failures"] == 1
    assert once.get("canaryRevision") == canary  # failureLimit 1 tolerates one
    later = NOW + dt.timedelta(seconds=31)
    twice = planner.plan(observe(new, once, ready, now=later, analysis=failing))
    assert twice.status["phase"] == "Degraded"
    assert twice.status["abortedRevision"] == canary
    assert twice.outcomes == ["aborted"]
    assert "errors = 0.2 (must be <= 0.01)" in twice.events[-1].message


def test_a_value_json_cannot_carry_is_left_out_of_the_status() -> None:
    new, status, stable, canary = canary_status()
    infinite = (planner.Measurement(ERRORS, math.inf),)
    plan = planner.plan(observe(new, status, {stable: 8, canary: 2}, analysis=infinite))
    (result,) = plan.status["lastAnalysis"]["results"]
    assert result == {"name": ERRORS.name, "verdict": "Failed"}
    json.dumps(plan.status, allow_nan=False)  # what the API server accepts


def test_inconclusive_results_pause_for_a_person() -> None:
    new, status, stable, canary = canary_status()
    empty = (planner.Measurement(ERRORS, None, "no data"),)
    plan = planner.plan(observe(new, status, {stable: 8, canary: 2}, analysis=empty))
    assert plan.status["phase"] == "Paused"
    assert plan.events[-1].reason == "AnalysisInconclusive"


def test_steps_advance_after_their_pause_and_a_passing_measurement() -> None:
    new, status, stable, canary = canary_status()
    ready = {stable: 8, canary: 2}
    passing = (planner.Measurement(ERRORS, 0.001),)
    measured = planner.plan(observe(new, status, ready, analysis=passing))
    assert measured.status["currentStep"] == 0  # the one-minute pause is not over
    assert measured.requeue_after is not None
    later = NOW + dt.timedelta(minutes=1, seconds=1)
    advanced = planner.plan(observe(new, measured.status, ready, now=later))
    assert (advanced.status["currentStep"], advanced.status["canaryWeight"]) == (1, 100)


def test_promote_full_and_retire_the_old_stable() -> None:
    new, status, stable, canary = canary_status()
    plan = planner.plan(
        observe(new, status, {stable: 8, canary: 2}, annotations={"stratus.dev/promote-full": "1"})
    )
    assert plan.status["stableRevision"] == canary
    assert plan.status["retiringRevision"] == stable
    assert plan.outcomes == ["promoted"]
    later = NOW + dt.timedelta(seconds=31)
    retired = planner.plan(observe(new, plan.status, {stable: 8, canary: 10}, now=later))
    assert retired.delete == [f"web-{stable}"]
    # The same annotation value is not acted on twice.
    again = planner.plan(
        dataclasses.replace(
            observe(new, retired.status, {canary: 10}),
            annotations={"stratus.dev/promote-full": "1"},
        )
    )
    assert again.outcomes == []


# -- replicas: who owns them, capacity, deadlines, honest weights ------------------------------


def fixed(minimum: int, steps: list[dict[str, Any]], **rollout: Any) -> InferenceServiceSpec:
    """A fixed-size service (no autoscaling, no analysis) with these canary steps."""
    return spec(
        replicas={"min": minimum, "max": minimum},
        steps=steps,
        analysis={"interval": "10s"},
        **rollout,
    )


def with_image(s: InferenceServiceSpec, image: str, **changes: Any) -> InferenceServiceSpec:
    return InferenceServiceSpec.model_validate(
        {**s.model_dump(by_alias=True, exclude_none=True), "image": image, **changes}
    )


def started(old: InferenceServiceSpec, size: int) -> tuple[InferenceServiceSpec, dict[str, Any]]:
    """serve:2 of `old` started as a canary beside a stable of `size` ready replicas."""
    new = with_image(old, "serve:2")
    status = planner.plan(observe(old, {}, {})).status
    return new, planner.plan(observe(new, status, {revision_of(old): size})).status


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    found: dict[str, Any] = next(c for c in status["conditions"] if c["type"] == kind)
    return found


def test_an_hpa_scaled_stable_is_left_alone_and_the_canary_follows_its_size() -> None:
    old = spec(
        replicas={"min": 2, "max": 10},
        autoscaling={"metric": "cpu", "target": 70},
        steps=[{"weight": 20, "pause": {}}, {"weight": 100}],
        analysis={"interval": "10s"},
    )
    first = planner.plan(observe(old, {}, {}))
    stable = revision_of(old)
    assert sized(first) == {f"web-{stable}": 2}  # created at replicas.min
    assert any(m["kind"] == "HorizontalPodAutoscaler" for m in first.apply)
    # The HPA scales the stable to 8: nothing claims its replicas back.
    steady = planner.plan(observe(old, first.status, {stable: 8}, children=made(first)))
    assert (steady.apply, steady.scale) == ([], [])
    assert condition(steady.status, "Healthy")["message"] == (
        "8 of 8 replicas of the stable revision ready"
    )
    # A canary at 20% beside 8 stable replicas: 2 canary replicas take 20%.
    new = with_image(old, "serve:2")
    canary = revision_of(new)
    status = planner.plan(observe(new, steady.status, {stable: 8})).status
    plan = planner.plan(observe(new, status, {stable: 8}))
    assert sized(plan) == {f"web-{canary}": 2}
    ready = planner.plan(observe(new, plan.status, {stable: 8, canary: 2}))
    assert sized(ready) == {}
    assert ready.status["canaryWeightAchieved"] == 20
    # The HPA scales the stable to 12: the canary follows, the stable is still not touched.
    grown = planner.plan(observe(new, ready.status, {stable: 12, canary: 2}))
    assert sized(grown) == {f"web-{canary}": 3}
    # Promoted: the HPA moves to the new stable, whose replicas the operator leaves alone.
    promoted = planner.plan(
        observe(
            new,
            grown.status,
            {stable: 12, canary: 3},
            annotations={"stratus.dev/promote-full": "1"},
        )
    )
    (hpa,) = [m for m in promoted.apply if m["kind"] == "HorizontalPodAutoscaler"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == f"web-{canary}"
    later = planner.plan(observe(new, promoted.status, {stable: 12, canary: 5}))
    assert sized(later) == {}


def test_a_canary_beside_an_autoscaled_stable_takes_at_most_half() -> None:
    old = spec(
        replicas={"min": 2, "max": 10},
        autoscaling={"metric": "cpu", "target": 70},
        steps=[{"weight": 80, "pause": {}}, {"weight": 100}],
        analysis={"interval": "10s"},
    )
    new, status = started(old, 4)
    stable, canary = revision_of(old), revision_of(new)
    plan = planner.plan(observe(new, status, {stable: 4, canary: 4}))
    assert plan.status["canaryWeightAchieved"] == 50
    exact = condition(plan.status, "WeightExact")
    assert (exact["status"], exact["reason"]) == ("False", "ReplicaRatio")
    assert exact["message"].startswith("80% asked, 50% achievable: the autoscaled stable keeps")


def test_a_hand_edited_fixed_size_stable_is_repaired() -> None:
    s = fixed(4, [{"weight": 50}, {"weight": 100}])
    status = planner.plan(observe(s, {}, {})).status
    stable = revision_of(s)
    plan = planner.plan(observe(s, status, {stable: 4}, sizes={stable: 9}))
    assert sized(plan) == {f"web-{stable}": 4}
    assert not any(m["kind"] == "HorizontalPodAutoscaler" for m in plan.apply)


def walk(
    new: InferenceServiceSpec, status: dict[str, Any], stable: str, size: int
) -> tuple[dict[str, Any], list[tuple[int, int, int]]]:
    """Runs a canary to its end, one canary pod becoming ready per pass and every scale-down
    taking effect at once (a scale-up only as pods become ready). Returns the last status and,
    per pass, (ready stable, ready canary, pods running)."""
    canary = revision_of(new)
    sizes, ready = {stable: size}, {stable: size, canary: 0}
    seen = []
    now = NOW
    for _ in range(60):
        plan = planner.plan(observe(new, status, ready, now=now, sizes=sizes))
        status = plan.status
        for name, count in sized(plan).items():
            sizes[name.removeprefix("web-")] = count
        for revision in (stable, canary):
            ready[revision] = min(ready[revision], sizes.get(revision, 0))
        seen.append((ready[stable], ready[canary], sizes[stable] + sizes.get(canary, 0)))
        if status["stableRevision"] == canary:
            return status, seen
        if ready[canary] < sizes.get(canary, 0):
            ready[canary] += 1
        now += dt.timedelta(seconds=20)
    raise AssertionError(f"not promoted: {status}")


def test_capacity_never_drops_below_the_original_while_canary_pods_become_ready() -> None:
    old = fixed(4, [{"weight": 25, "pause": {"duration": "30s"}}, {"weight": 100}])
    new, status = started(old, 4)
    last, seen = walk(new, status, revision_of(old), 4)
    assert last["phase"] == "Healthy"
    assert all(stable + canary >= 4 for stable, canary, _ in seen), seen
    # What Keep costs: the canary pods not yet ready, at most the 100% step's three new ones.
    assert max(pods for _, _, pods in seen) == 7
    assert (seen[-1][0], seen[-1][1]) == (0, 4)


def test_capacity_reduce_scales_the_stable_down_when_a_step_begins() -> None:
    old = fixed(
        4, [{"weight": 25, "pause": {"duration": "30s"}}, {"weight": 100}], capacity="Reduce"
    )
    new, status = started(old, 4)
    stable, canary = revision_of(old), revision_of(new)
    plan = planner.plan(observe(new, status, {stable: 4}))
    assert sized(plan) == {f"web-{canary}": 1, f"web-{stable}": 3}
    _, seen = walk(new, status, stable, 4)
    assert min(s + c for s, c, _ in seen) == 1  # the dip Keep avoids
    assert max(pods for _, _, pods in seen) == 4  # and its cost: no extra replica


def test_a_canary_never_ready_is_rolled_back_at_its_progress_deadline() -> None:
    old = fixed(4, [{"weight": 50, "pause": {}}, {"weight": 100}], capacity="Reduce")
    new, status = started(old, 4)
    stable, canary = revision_of(old), revision_of(new)
    assert status["canaryUnreadySince"] == status["stepStartedAt"]
    sizes = {stable: 2, canary: 2}
    almost = NOW + dt.timedelta(minutes=9, seconds=59)
    waiting = planner.plan(observe(new, status, {stable: 2, canary: 0}, almost, sizes))
    assert waiting.status["canaryRevision"] == canary
    assert waiting.requeue_after == 1.0  # woken at the deadline, with no event to wait for
    late = NOW + dt.timedelta(minutes=10)
    plan = planner.plan(observe(new, waiting.status, {stable: 2, canary: 0}, late, sizes))
    assert (plan.status["phase"], plan.status["abortedRevision"]) == ("Degraded", canary)
    healthy = condition(plan.status, "Healthy")
    message = (
        f"canary {canary} rolled back: 0 of 2 canary pods ready after "
        "rollout.progressDeadline (10m), at step 1 of 2"
    )
    assert (healthy["reason"], healthy["message"]) == ("ProgressDeadlineExceeded", message)
    assert plan.events[-1].reason == "ProgressDeadlineExceeded"
    assert plan.events[-1].type == "Warning"
    assert plan.outcomes == ["aborted"]
    # The stable back at full size, the canary at none.
    assert sized(plan) == {f"web-{stable}": 4, f"web-{canary}": 0}
    assert "canaryUnreadySince" not in plan.status


def test_under_keep_a_never_ready_canary_never_shrank_the_stable() -> None:
    old = fixed(4, [{"weight": 50, "pause": {}}, {"weight": 100}])
    new, status = started(old, 4)
    stable, canary = revision_of(old), revision_of(new)
    waiting = planner.plan(observe(new, status, {stable: 4, canary: 0}, sizes={canary: 2}))
    assert sized(waiting) == {}
    late = NOW + dt.timedelta(minutes=10)
    plan = planner.plan(observe(new, status, {stable: 4, canary: 0}, late, {canary: 2}))
    assert plan.status["phase"] == "Degraded"
    assert sized(plan) == {f"web-{canary}": 0}


def test_a_canary_pod_lost_later_gets_a_deadline_of_its_own() -> None:
    old = fixed(4, [{"weight": 50, "pause": {}}, {"weight": 100}], progressDeadline="5m")
    new, status = started(old, 4)
    stable, canary = revision_of(old), revision_of(new)
    ready = planner.plan(observe(new, status, {stable: 2, canary: 2})).status
    assert "canaryUnreadySince" not in ready
    # An hour into the indefinite pause a canary pod is lost: five minutes from then.
    hour = NOW + dt.timedelta(hours=1)
    lost = planner.plan(observe(new, ready, {stable: 2, canary: 1}, hour, {canary: 2}))
    assert lost.status["canaryRevision"] == canary
    assert lost.status["canaryUnreadySince"] == "2026-01-01T13:00:00.000Z"
    later = hour + dt.timedelta(minutes=5)
    gone = planner.plan(observe(new, lost.status, {stable: 2, canary: 1}, later, {canary: 2}))
    assert gone.status["phase"] == "Degraded"
    assert "1 of 2 canary pods ready" in condition(gone.status, "Healthy")["message"]


def test_the_weight_achieved_with_min_2_and_a_10_percent_step() -> None:
    old = fixed(2, [{"weight": 10, "pause": {}}, {"weight": 100}])
    new, status = started(old, 2)
    stable, canary = revision_of(old), revision_of(new)
    assert status["canaryWeight"] == 10
    starting = planner.plan(observe(new, status, {stable: 2}))
    assert starting.status["canaryWeightAchieved"] == 0
    plan = planner.plan(observe(new, starting.status, {stable: 1, canary: 1}))
    assert (plan.status["canaryWeight"], plan.status["canaryWeightAchieved"]) == (10, 50)
    exact = condition(plan.status, "WeightExact")
    assert (exact["status"], exact["reason"]) == ("False", "ReplicaRatio")
    assert exact["message"] == (
        "10% asked, 50% achievable: 2 replicas split as 1 canary and 1 stable (the canary "
        "rounds up to whole replicas, the stable keeps one until 100%); more replicas or an "
        "HTTPRoute give finer weights"
    )


def test_an_exact_split_says_so_and_the_condition_goes_with_the_canary() -> None:
    new, status, stable, canary = canary_status()
    plan = planner.plan(observe(new, status, {stable: 8, canary: 2}))
    exact = condition(plan.status, "WeightExact")
    assert (exact["status"], exact["message"]) == ("True", "2 canary and 8 stable replicas: 20%")
    assert plan.status["canaryWeightAchieved"] == 20
    aborted = planner.plan(
        observe(new, plan.status, {stable: 8, canary: 2}, annotations={"stratus.dev/abort": "1"})
    )
    assert "WeightExact" not in {c["type"] for c in aborted.status["conditions"]}
    assert aborted.status["canaryWeightAchieved"] == 0


def test_an_autoscaler_follows_the_spec_and_goes_when_no_longer_asked_for() -> None:
    s = spec(replicas={"min": 2, "max": 10}, autoscaling={"metric": "cpu", "target": 70})
    stable = revision_of(s)
    status = planner.plan(observe(s, {}, {})).status
    assert condition(status, "Autoscaling")["reason"] == "HorizontalPodAutoscaler"
    # A new generation (max 12) re-applies the HPA.
    more = with_image(s, "serve:1", replicas={"min": 2, "max": 12})
    plan = planner.plan(dataclasses.replace(observe(more, status, {stable: 5}), generation=2))
    (hpa,) = [m for m in plan.apply if m["kind"] == "HorizontalPodAutoscaler"]
    assert hpa["spec"]["maxReplicas"] == 12
    # Autoscaling removed: the HPA is deleted, and the operator owns the replicas again.
    plain = with_image(s, "serve:1", replicas={"min": 3, "max": 3}, autoscaling=None)
    gone = planner.plan(dataclasses.replace(observe(plain, plan.status, {stable: 5}), generation=3))
    assert gone.remove == [("autoscaling/v2", "HorizontalPodAutoscaler", "web")]
    assert "Autoscaling" not in {c["type"] for c in gone.status["conditions"]}
    assert sized(gone) == {f"web-{stable}": 3}
    again = planner.plan(
        dataclasses.replace(observe(plain, gone.status, {stable: 3}), generation=3)
    )
    assert again.remove == []


def test_without_keda_the_operator_sizes_a_prometheus_autoscaled_stable() -> None:
    s = spec(
        replicas={"min": 2, "max": 8},
        autoscaling={"metric": "prometheus", "target": 10, "query": "sum(up)"},
    )
    stable = revision_of(s)
    status = planner.plan(observe(s, {}, {})).status
    assert condition(status, "Autoscaling")["reason"] == "KEDANotInstalled"
    assert sized(planner.plan(observe(s, status, {stable: 5}))) == {f"web-{stable}": 2}
    first = planner.plan(observe(s, {}, {}))
    keda = planner.plan(observe(s, status, {stable: 2}, keda=True, children=made(first)))
    assert [m["kind"] for m in keda.apply] == ["ScaledObject"]
    assert sized(planner.plan(observe(s, keda.status, {stable: 5}, keda=True))) == {}


# -- an HTTPRoute's weights, step by step -------------------------------------------------------


def route_of(rules: list[dict[str, Any]]) -> RouteView:
    return route_view({"metadata": {"name": "web-route"}, "spec": {"rules": rules}})


def backends(route: RouteView) -> list[tuple[str, int]]:
    (rule,) = route.rules
    return [(ref["name"], ref["weight"]) for ref in rule["backendRefs"]]


def test_an_http_route_carries_each_steps_weight_while_the_stable_keeps_its_size() -> None:
    steps: list[dict[str, Any]] = [
        {"weight": 10, "pause": {}},
        {"weight": 50, "pause": {}},
        {"weight": 100},
    ]
    old = fixed(10, steps, trafficRouting={"httpRoute": {"name": "web-route"}})
    new = with_image(old, "serve:2")
    stable, canary = revision_of(old), revision_of(new)
    found = route_of([{"backendRefs": [{"name": "web", "port": 80}]}])

    def step(
        s: InferenceServiceSpec, status: dict[str, Any], ready: dict[str, int], **extra: Any
    ) -> planner.Plan:
        """One pass, the route then as the plan left it."""
        nonlocal found
        plan = planner.plan(observe(s, status, ready, routes=(found,), **extra))
        if plan.route is not None:
            found = route_of(plan.route[1])
        return plan

    first = step(old, {}, {})
    assert backends(found) == [(f"web-{stable}", 100)]
    assert step(old, first.status, {stable: 10}).route is None  # in place: not patched again
    status = step(new, first.status, {stable: 10}).status
    before = 0
    for weight, pods, was in ((10, 1, 0), (50, 5, 1), (100, 10, 5)):
        if weight > 10:  # the pause is indefinite: a person promotes
            commands = {"stratus.dev/promote": str(weight)}
            status = step(new, status, {stable: 10, canary: was}, annotations=commands).status
        assert status["canaryWeight"] == weight
        # The canary grows to its share; the stable keeps all 10 replicas.
        grown = step(new, status, {stable: 10, canary: was})
        assert sized(grown) == {f"web-{canary}": pods}
        # Until the canary's new pods are ready, the route keeps the previous step's weight.
        assert dict(backends(found)).get(f"web-{canary}", 0) == before
        assert (
            f"{weight}% once the canary has {pods} ready pods ({was} now)"
            in (condition(grown.status, "TrafficRouted")["message"])
        )
        before = weight
        plan = step(new, grown.status, {stable: 10, canary: pods})
        assert backends(found) == [(f"web-{stable}", 100 - weight), (f"web-{canary}", weight)]
        assert plan.status["canaryWeightAchieved"] == weight
        routed = condition(plan.status, "TrafficRouted")
        assert routed["message"] == f"HTTPRoute web-route: canary {weight}%"
        status = plan.status
    later = NOW + dt.timedelta(minutes=1)
    done = step(new, status, {stable: 10, canary: 10}, now=later)
    assert done.outcomes == ["promoted"]
    # The new stable takes every request; the old one is idle until it is retired.
    assert backends(found) == [(f"web-{canary}", 100)]
    assert done.status["retiringRevision"] == stable
    assert sized(done) == {}


# -- which autoscaler ---------------------------------------------------------------------------


AUTOSCALER_KINDS = {"HorizontalPodAutoscaler", "ScaledObject"}


def kinds(plan: planner.Plan) -> list[str]:
    """The autoscalers the plan applies."""
    return sorted(m["kind"] for m in plan.apply if m["kind"] in AUTOSCALER_KINDS)


def test_cpu_and_memory_get_an_hpa_and_a_prometheus_query_a_scaled_object() -> None:
    for metric, made in (("cpu", "HorizontalPodAutoscaler"), ("memory", "HorizontalPodAutoscaler")):
        s = spec(replicas={"min": 2, "max": 8}, autoscaling={"metric": metric, "target": 70})
        plan = planner.plan(observe(s, {}, {}, keda=True))
        assert kinds(plan) == [made]
        assert condition(plan.status, "Autoscaling")["reason"] == made
    query = {"metric": "prometheus", "target": 10, "query": "sum(rate(requests[1m]))"}
    s = spec(replicas={"min": 2, "max": 8}, autoscaling=query)
    plan = planner.plan(observe(s, {}, {}, keda=True, prometheus_url="http://prom:9090"))
    (scaled,) = [m for m in plan.apply if m["kind"] == "ScaledObject"]
    assert scaled["spec"]["scaleTargetRef"]["name"] == f"web-{revision_of(s)}"
    assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (2, 8)
    autoscaling = condition(plan.status, "Autoscaling")
    assert (autoscaling["status"], autoscaling["reason"]) == ("True", "ScaledObject")
    assert autoscaling["message"].startswith("KEDA scales the stable revision from 2 to 8")


def test_switching_the_metric_swaps_the_hpa_for_a_scaled_object_and_back() -> None:
    cpu = spec(replicas={"min": 2, "max": 8}, autoscaling={"metric": "cpu", "target": 70})
    stable = revision_of(cpu)
    status = planner.plan(observe(cpu, {}, {}, keda=True)).status
    query = {"metric": "prometheus", "target": 10, "query": "sum(up)"}
    prom = with_image(cpu, "serve:1", autoscaling=query)
    assert revision_of(prom) == stable  # the pods are the same: no canary
    to_keda = planner.plan(
        dataclasses.replace(observe(prom, status, {stable: 4}, keda=True), generation=2)
    )
    assert to_keda.remove == [("autoscaling/v2", "HorizontalPodAutoscaler", "web")]
    assert kinds(to_keda) == ["ScaledObject"]
    assert "canaryRevision" not in to_keda.status
    back = planner.plan(
        dataclasses.replace(observe(cpu, to_keda.status, {stable: 4}, keda=True), generation=3)
    )
    assert back.remove == [("keda.sh/v1alpha1", "ScaledObject", "web")]
    assert kinds(back) == ["HorizontalPodAutoscaler"]


def test_a_scaled_object_is_applied_again_only_when_what_it_says_may_change() -> None:
    query = {"metric": "prometheus", "target": 10, "query": "sum(up)"}
    old = spec(
        replicas={"min": 2, "max": 8}, autoscaling=query, steps=[{"weight": 50}, {"weight": 100}]
    )
    stable = revision_of(old)
    first = planner.plan(observe(old, {}, {}, keda=True))
    assert kinds(first) == ["ScaledObject"]
    steady = planner.plan(observe(old, first.status, {stable: 3}, keda=True))
    assert kinds(steady) == []
    # A new spec (generation 2) applies it again, still on the stable; then it is left alone
    # while the canary runs beside the stable.
    new = with_image(old, "serve:2")
    canary = revision_of(new)
    started = planner.plan(
        dataclasses.replace(observe(new, steady.status, {stable: 3}, keda=True), generation=2)
    )
    (scaled,) = [m for m in started.apply if m["kind"] == "ScaledObject"]
    assert scaled["spec"]["scaleTargetRef"]["name"] == f"web-{stable}"
    running = planner.plan(
        dataclasses.replace(
            observe(new, started.status, {stable: 3, canary: 3}, keda=True), generation=2
        )
    )
    assert running.status["canaryRevision"] == canary
    assert kinds(running) == []
    # Promoted: it follows the new stable.
    promoted = planner.plan(
        dataclasses.replace(
            observe(
                new,
                running.status,
                {stable: 3, canary: 3},
                keda=True,
                annotations={"stratus.dev/promote-full": "1"},
            ),
            generation=2,
        )
    )
    (scaled,) = [m for m in promoted.apply if m["kind"] == "ScaledObject"]
    assert scaled["spec"]["scaleTargetRef"]["name"] == f"web-{canary}"
    assert promoted.remove == []
