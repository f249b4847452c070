"""The HTTPRoute traffic split rewrites only this InferenceService's own rules, and a person's
`stratus promote` is acted on during an inconclusive pause."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

from stratus.podspec import Owner
from stratus.serving import builders, planner
from stratus.serving.views import RouteView, route_view
from tests.unit.test_serving_planner import ERRORS, NOW, canary_status, condition, observe, spec

OWNER = Owner("InferenceService", "web", "ns", "uid")
OURS: dict[str, Any] = {
    "matches": [{"path": {"type": "PathPrefix", "value": "/v1"}}],
    "backendRefs": [{"name": "web", "port": 80}],
}
THEIRS: dict[str, Any] = {
    "matches": [{"path": {"type": "PathPrefix", "value": "/billing"}}],
    "filters": [{"type": "RequestHeaderModifier", "requestHeaderModifier": {"add": []}}],
    "backendRefs": [{"name": "billing", "port": 8080, "weight": 7}],
}


def route(*rules: dict[str, Any]) -> RouteView:
    return route_view({"metadata": {"name": "web-route"}, "spec": {"rules": list(rules)}})


def routed(image: str = "serve:1") -> Any:
    return spec(image, trafficRouting={"httpRoute": {"name": "web-route"}})


# -- builders: which backends are ours --------------------------------------------------------


def test_only_this_services_own_backends_count_as_ours() -> None:
    ours: list[dict[str, Any]] = [
        {"name": "web"},
        {"name": "web-0123456789", "port": 80},
        {"name": "web", "kind": "Service", "group": "", "namespace": "ns"},
    ]
    theirs: list[dict[str, Any]] = [
        {"name": "billing"},
        {"name": "web-billing"},  # a name that only starts like ours
        {"name": "web-0123456789abc"},
        {"name": "web", "namespace": "other"},
        {"name": "web", "kind": "ServiceImport", "group": "multicluster.x-k8s.io"},
        {"name": "webx"},
    ]
    assert all(builders.routes_here(OWNER, ref) for ref in ours)
    assert not any(builders.routes_here(OWNER, ref) for ref in theirs)
    # A rule that mixes ours with another's is not ours; nor is one with no backends.
    mixed = {"backendRefs": [{"name": "web"}, {"name": "billing"}]}
    assert not builders.own_rule(OWNER, mixed)
    assert not builders.own_rule(OWNER, {"filters": [{"type": "RequestRedirect"}]})


def test_weighted_rules_rewrite_our_rule_and_leave_another_teams_exactly_as_it_was() -> None:
    rules = [copy.deepcopy(OURS), copy.deepcopy(THEIRS)]
    weighted = builders.weighted_rules(rules, OWNER, "aaaaaaaaaa", "bbbbbbbbbb", 20)
    assert weighted[0] == {
        "matches": OURS["matches"],
        "backendRefs": [
            {"name": "web-aaaaaaaaaa", "port": 80, "weight": 80},
            {"name": "web-bbbbbbbbbb", "port": 80, "weight": 20},
        ],
    }
    assert weighted[1] == THEIRS
    # Rewritten again (after a promotion), our rule is still recognised as ours.
    promoted = builders.weighted_rules(weighted, OWNER, "bbbbbbbbbb", None, 0)
    assert promoted[0]["backendRefs"] == [{"name": "web-bbbbbbbbbb", "port": 80, "weight": 100}]
    assert promoted[1] == THEIRS
    assert rules == [OURS, THEIRS]  # the input is not changed in place


# -- planner: the route patch and its condition -----------------------------------------------


def test_a_canary_on_a_route_of_two_rules_weighs_only_its_own() -> None:
    old, new = routed("serve:1"), routed("serve:2")
    two = route(OURS, THEIRS)
    first = planner.plan(observe(old, {}, {}, routes=(two,)))
    stable = first.status["stableRevision"]
    status = planner.plan(observe(new, first.status, {stable: 10}, routes=(two,))).status
    canary = status["canaryRevision"]
    plan = planner.plan(observe(new, status, {stable: 10, canary: 2}, routes=(two,)))
    assert plan.route is not None
    name, rules = plan.route
    assert name == "web-route"
    assert rules[0]["matches"] == OURS["matches"]
    assert rules[0]["backendRefs"] == [
        {"name": f"web-{stable}", "port": 80, "weight": 80},
        {"name": f"web-{canary}", "port": 80, "weight": 20},
    ]
    assert rules[1] == THEIRS
    assert condition(plan.status, "TrafficRouted")["status"] == "True"


def test_a_route_with_no_rule_of_ours_is_left_alone_and_said_so() -> None:
    _, status, stable, canary = canary_status()
    theirs_only = route(THEIRS)
    s = routed("serve:2")
    plan = planner.plan(observe(s, status, {stable: 10, canary: 2}, routes=(theirs_only,)))
    assert plan.route is None
    routed_condition = condition(plan.status, "TrafficRouted")
    assert (routed_condition["status"], routed_condition["reason"]) == (
        "False",
        "NoRuleForService",
    )
    # The split cannot be applied: the canary is not said to get traffic, nor advanced.
    assert plan.status["canaryWeightAchieved"] == 0
    later = NOW + dt.timedelta(minutes=5)
    promote = {"stratus.dev/promote": "1"}
    held = planner.plan(
        observe(
            s,
            status,
            {stable: 10, canary: 2},
            now=later,
            routes=(theirs_only,),
            annotations=promote,
        )
    )
    assert held.status["currentStep"] == 0


# -- promote during an inconclusive pause -------------------------------------------------------


def test_a_promote_during_an_inconclusive_pause_advances_past_the_step() -> None:
    new, status, stable, canary = canary_status()
    ready = {stable: 8, canary: 2}
    empty = (planner.Measurement(ERRORS, None, "no data"),)
    paused = planner.plan(observe(new, status, ready, analysis=empty)).status
    assert paused["phase"] == "Paused"
    # Later, the analysis is due again and still finds no data; a person promotes.
    later = NOW + dt.timedelta(minutes=5)
    promote = {"stratus.dev/promote": "1"}
    asked = planner.plan(observe(new, paused, ready, now=later, annotations=promote))
    assert asked.analyze  # the controller measures, then plans again with the result
    plan = planner.plan(observe(new, paused, ready, now=later, annotations=promote, analysis=empty))
    assert (plan.status["currentStep"], plan.status["canaryWeight"]) == (1, 100)
    assert plan.status["phase"] == "Progressing"
    assert [e.reason for e in plan.events] == ["AnalysisInconclusive", "StepAdvanced"]
    assert plan.status["handledCommands"]["stratus.dev/promote"] == "1"
    # The person has judged the inconclusive results: the count starts again.
    assert plan.status["lastAnalysis"]["inconclusive"] == 0
    # The same value is not acted on twice.
    again = planner.plan(observe(new, plan.status, {stable: 0, canary: 10}, annotations=promote))
    assert again.status.get("currentStep") == 1


def test_without_a_promote_an_inconclusive_pause_holds() -> None:
    new, status, stable, canary = canary_status()
    ready = {stable: 8, canary: 2}
    empty = (planner.Measurement(ERRORS, None, "no data"),)
    paused = planner.plan(observe(new, status, ready, analysis=empty)).status
    later = NOW + dt.timedelta(minutes=5)
    held = planner.plan(observe(new, paused, ready, now=later, analysis=empty))
    assert (held.status["phase"], held.status["currentStep"]) == ("Paused", 0)


def test_a_promote_does_not_overrule_a_failed_analysis() -> None:
    new, status, stable, canary = canary_status()
    ready = {stable: 8, canary: 2}
    failing = (planner.Measurement(ERRORS, 0.5),)
    once = planner.plan(observe(new, status, ready, analysis=failing)).status
    later = NOW + dt.timedelta(minutes=5)
    promote = {"stratus.dev/promote": "1"}
    plan = planner.plan(observe(new, once, ready, now=later, annotations=promote, analysis=failing))
    assert plan.outcomes == ["aborted"]
    assert plan.status["abortedRevision"] == canary
