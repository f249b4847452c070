"""InferenceService with Gateway API traffic routing and KEDA autoscaling, on their real CRDs."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from tests.conftest import Cluster, install_crds
from tests.e2e.test_serving import Serving, service
from tests.support import wait_for

pytestmark = pytest.mark.usefixtures("operator")
ROUTE = ("gateway.networking.k8s.io", "v1")


@pytest.fixture(scope="module")
def gateway_api(cluster: Cluster) -> None:
    install_crds(cluster, "gateway-api")


@pytest.fixture
def serving(cluster: Cluster, namespace: str) -> Serving:
    return Serving(cluster, namespace)


def backends(serving: Serving, route: str) -> list[tuple[str, int]]:
    obj = serving.custom.get_namespaced_custom_object(*ROUTE, serving.ns, "httproutes", route)
    return [(b["name"], b.get("weight", 1)) for b in obj["spec"]["rules"][0]["backendRefs"]]


@pytest.mark.usefixtures("gateway_api")
def test_httproute_weights_carry_the_canary(serving: Serving) -> None:
    serving.custom.create_namespaced_custom_object(
        *ROUTE,
        serving.ns,
        "httproutes",
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "web-route"},
            "spec": {
                "parentRefs": [{"name": "public"}],
                "rules": [
                    {
                        "matches": [{"path": {"type": "PathPrefix", "value": "/v1"}}],
                        "backendRefs": [{"name": "web", "port": 80}],
                    }
                ],
            },
        },
    )
    obj = service("web")
    obj["spec"]["rollout"]["trafficRouting"] = {"httpRoute": {"name": "web-route"}}
    serving.create(obj)
    stable = serving.wait("web", "Healthy", lambda s: s.get("phase") == "Healthy")["stableRevision"]
    wait_for(
        "the route on the stable revision",
        lambda: backends(serving, "web-route") == [(f"web-{stable}", 100)],
    )
    serving.set_image("web", "serve:2")
    canary = serving.wait("web", "paused", lambda s: s.get("phase") == "Paused")["canaryRevision"]
    wait_for(
        "50/50 weights",
        lambda: backends(serving, "web-route") == [(f"web-{stable}", 50), (f"web-{canary}", 50)],
    )
    # The stable keeps its size while the route splits traffic.
    assert serving.replicas("web") == {stable: 4, canary: 2}
    route = serving.custom.get_namespaced_custom_object(
        *ROUTE, serving.ns, "httproutes", "web-route"
    )
    assert route["spec"]["rules"][0]["matches"][0]["path"]["value"] == "/v1"
    serving.command("promote", "web")
    wait_for(
        "all traffic on the promoted revision",
        lambda: backends(serving, "web-route") == [(f"web-{canary}", 100)],
    )


@pytest.mark.usefixtures("gateway_api")
def test_a_missing_httproute_is_a_condition(serving: Serving) -> None:
    obj = service("lost")
    obj["spec"]["rollout"]["trafficRouting"] = {"httpRoute": {"name": "nope"}}
    serving.create(obj)
    _, routed = serving.wait_condition("lost", "TrafficRouted", "False")
    assert routed["reason"] == "HTTPRouteNotFound"


def test_prometheus_autoscaling_needs_keda_then_gets_a_scaledobject(
    serving: Serving, cluster: Cluster
) -> None:
    obj: dict[str, Any] = service("scaled")
    obj["spec"]["replicas"] = {"min": 2, "max": 8}
    obj["spec"]["autoscaling"] = {
        "metric": "prometheus",
        "target": 100,
        "query": 'sum(rate(http_requests_total{service="scaled"}[1m]))',
    }
    serving.create(obj)
    status = serving.wait(
        "scaled",
        "KEDANotInstalled",
        lambda s: any(c["reason"] == "KEDANotInstalled" for c in s.get("conditions", [])),
    )
    install_crds(cluster, "keda")
    # Any change wakes the InferenceService; a replica bound is as good as any.
    serving.custom.patch_namespaced_custom_object(
        "stratus.dev",
        "v1alpha1",
        serving.ns,
        "inferenceservices",
        "scaled",
        {"spec": {"replicas": {"min": 2, "max": 9}}},
    )
    scaled = wait_for(
        "the ScaledObject",
        lambda: client.CustomObjectsApi(cluster.api).list_namespaced_custom_object(
            "keda.sh", "v1alpha1", serving.ns, "scaledobjects"
        )["items"],
    )
    (scaled_object,) = scaled
    assert scaled_object["spec"]["scaleTargetRef"]["name"] == f"scaled-{status['stableRevision']}"
    trigger = scaled_object["spec"]["triggers"][0]
    assert trigger["type"] == "prometheus"
    assert trigger["metadata"]["threshold"] == "100"
