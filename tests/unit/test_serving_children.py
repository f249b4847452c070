"""Level-triggered children of an InferenceService: every pass wants its Service, PDB, HPA and
revision Services; a child missing or edited is applied again, an unchanged one is not. The
controller's side (children before the status, expectations) is in test_serving_controller."""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from stratus.api.inferenceservice import InferenceServiceSpec
from stratus.podspec import Manifest, Owner
from stratus.serving import builders, planner
from stratus.serving.revision import revision_of
from stratus.serving.views import ChildView, DeploymentView, child_view, up_to_date

NOW = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
OWNER = Owner("InferenceService", "web", "ns", "uid")
CHILD_KINDS = ("Service", "PodDisruptionBudget", "HorizontalPodAutoscaler")


def raw_spec(image: str = "serve:1", **extra: Any) -> dict[str, Any]:
    return {
        "image": image,
        "model": {"uri": "https://m/x"},
        "replicas": {"min": 2, "max": 6},
        "autoscaling": {"metric": "cpu", "target": 70},
        "rollout": {"steps": [{"weight": 50, "pause": {}}, {"weight": 100}]},
        **extra,
    }


def observe(
    s: InferenceServiceSpec,
    status: dict[str, Any],
    ready: dict[str, int],
    children: tuple[ChildView, ...],
    **extra: Any,
) -> planner.Observed:
    return planner.Observed(
        owner=OWNER,
        generation=1,
        spec=s,
        status=status,
        annotations={},
        deployments=tuple(DeploymentView(f"web-{r}", r, n, n) for r, n in ready.items()),
        staging_failures=(),
        now=NOW,
        staging_image="img",
        children=children,
        **extra,
    )


def as_served(manifest: Manifest) -> Manifest:
    """The child as the API server gives it back: our fields, plus its defaults and status."""
    served = copy.deepcopy(manifest)
    served["metadata"]["resourceVersion"] = "7"
    served["metadata"]["labels"]["someone.else/label"] = "x"
    spec = served["spec"]
    if manifest["kind"] == "Service":
        spec.update({"clusterIP": "10.0.0.9", "type": "ClusterIP", "sessionAffinity": "None"})
        for port in spec["ports"]:
            port["protocol"] = "TCP"
    elif manifest["kind"] == "HorizontalPodAutoscaler":
        spec["behavior"] = {"scaleUp": {"stabilizationWindowSeconds": 0}}
    served["status"] = {"observed": True}
    return served


def children_of(*plans: planner.Plan) -> dict[tuple[str, str], Manifest]:
    """The Services, PDBs and HPAs these plans applied, as served (the last plan's version)."""
    return {
        (m["kind"], m["metadata"]["name"]): as_served(m)
        for p in plans
        for m in p.apply
        if m["kind"] in CHILD_KINDS
    }


def served(value: Any) -> Any:
    """A manifest as the API server returns it: fields at their zero value (false, 0, empty)
    left out, as Go's omitempty does, and defaults added (a port's protocol)."""
    if isinstance(value, dict):
        kept = {k: served(v) for k, v in value.items() if v not in (False, 0, "", None, [], {})}
        if "port" in kept:
            kept.setdefault("protocol", "TCP")
        return kept
    if isinstance(value, list):
        return [served(v) for v in value]
    return value


def views(children: dict[tuple[str, str], Manifest]) -> tuple[ChildView, ...]:
    return tuple(child_view(served(m)) for m in children.values())


def steady() -> tuple[InferenceServiceSpec, dict[str, Any], dict[tuple[str, str], Manifest]]:
    """A Healthy InferenceService with its stable revision ready and every child in place."""
    s = InferenceServiceSpec.model_validate(raw_spec())
    first = planner.plan(observe(s, {}, {}, ()))
    children = children_of(first)
    second = planner.plan(observe(s, first.status, {revision_of(s): 2}, views(children)))
    assert second.status["phase"] == "Healthy"
    return s, second.status, children


def applied(plan: planner.Plan) -> list[tuple[str, str]]:
    return [(m["kind"], m["metadata"]["name"]) for m in plan.apply]


def test_the_first_pass_makes_every_child() -> None:
    s = InferenceServiceSpec.model_validate(raw_spec())
    first = planner.plan(observe(s, {}, {}, ()))
    assert applied(first) == [
        ("Service", "web"),
        ("PodDisruptionBudget", "web"),
        ("Deployment", f"web-{revision_of(s)}"),
        ("HorizontalPodAutoscaler", "web"),
    ]


def test_unchanged_children_are_not_applied_again() -> None:
    s, status, children = steady()
    again = planner.plan(observe(s, status, {revision_of(s): 2}, views(children)))
    assert again.apply == []
    assert again.status == status


@pytest.mark.parametrize("kind", CHILD_KINDS)
def test_a_missing_child_is_applied_again_when_nothing_else_changed(kind: str) -> None:
    s, status, children = steady()
    del children[(kind, "web")]
    plan = planner.plan(observe(s, status, {revision_of(s): 2}, views(children)))
    assert applied(plan) == [(kind, "web")]
    # Nothing else moves: the status stays as it was.
    assert plan.status == status


EDITS: dict[str, Callable[[Manifest], None]] = {
    "selector": lambda m: m["spec"]["selector"].update({"stratus.dev/inferenceservice": "other"}),
    "port": lambda m: m["spec"]["ports"][0].update({"port": 8080}),
    "extra port": lambda m: m["spec"]["ports"].append({"name": "x", "port": 1}),
    "our label": lambda m: m["metadata"]["labels"].pop("app.kubernetes.io/managed-by"),
    "owner": lambda m: m["metadata"].update({"ownerReferences": []}),
}


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_a_service_edited_by_hand_is_put_back(edit: str) -> None:
    s, status, children = steady()
    EDITS[edit](children[("Service", "web")])
    plan = planner.plan(observe(s, status, {revision_of(s): 2}, views(children)))
    assert applied(plan) == [("Service", "web")]


def test_an_edited_pdb_and_hpa_are_put_back() -> None:
    s, status, children = steady()
    children[("PodDisruptionBudget", "web")]["spec"]["maxUnavailable"] = 3
    children[("HorizontalPodAutoscaler", "web")]["spec"]["maxReplicas"] = 60
    plan = planner.plan(observe(s, status, {revision_of(s): 2}, views(children)))
    assert applied(plan) == [("PodDisruptionBudget", "web"), ("HorizontalPodAutoscaler", "web")]


def test_a_new_spec_reapplies_the_hpa_only_when_it_differs() -> None:
    s, status, children = steady()
    more = InferenceServiceSpec.model_validate(raw_spec(replicas={"min": 2, "max": 9}))
    # Same revision (replicas are not part of it), new maximum: the HPA is applied.
    assert revision_of(more) == revision_of(s)
    plan = planner.plan(observe(more, status, {revision_of(s): 2}, views(children)))
    (hpa,) = [m for m in plan.apply if m["kind"] == "HorizontalPodAutoscaler"]
    assert hpa["spec"]["maxReplicas"] == 9
    assert applied(plan) == [("HorizontalPodAutoscaler", "web")]


def test_revision_services_are_wanted_on_every_pass_with_an_http_route() -> None:
    routed = raw_spec(rollout={"steps": [{"weight": 50, "pause": {}}, {"weight": 100}]})
    routed["rollout"]["trafficRouting"] = {"httpRoute": {"name": "web"}}
    s = InferenceServiceSpec.model_validate(routed)
    stable = revision_of(s)
    first = planner.plan(observe(s, {}, {}, ()))
    assert ("Service", f"web-{stable}") in applied(first)
    children = children_of(first)
    # A pass later, the Deployment is there and the route is missing: nothing to apply.
    later = planner.plan(observe(s, first.status, {stable: 2}, views(children)))
    assert later.apply == []
    # Someone deletes the revision's Service: it comes back, though the Deployment is there.
    del children[("Service", f"web-{stable}")]
    again = planner.plan(observe(s, later.status, {stable: 2}, views(children)))
    assert applied(again) == [("Service", f"web-{stable}")]


def test_a_field_the_api_server_leaves_out_reads_as_its_zero_value() -> None:
    """Our Service says publishNotReadyAddresses: false, which the API server omits: it is up
    to date (not applied on every pass), and the shadow proxy's true is put back to false."""
    plain, proxied = builders.build_service(OWNER), builders.build_service(OWNER, proxy=True)
    assert "publishNotReadyAddresses" not in served(plain)["spec"]
    assert up_to_date(plain, child_view(served(plain)))
    assert up_to_date(proxied, child_view(served(proxied)))
    assert not up_to_date(plain, child_view(served(proxied)))
    assert not up_to_date(proxied, child_view(served(plain)))
