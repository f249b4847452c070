"""The chart's NetworkPolicy for the operator's own pods, rendered by the pinned helm: ingress to
the metrics and health ports only from the peers the admin names, egress only to the API server,
the Prometheus addresses and DNS. Every test but the last renders offline and needs no cluster;
the last has helm look the API server up in the test cluster, as helm install does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from stratus.devcluster import packaging
from tests.conftest import Cluster, kubectl

Obj = dict[str, Any]
API = [
    "--set",
    "networkPolicy.enabled=true",
    "--set",
    "networkPolicy.apiServer.cidrs={10.0.0.1/32}",
]
MONITORING = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
KUBE_DNS = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
}


def render(*args: str) -> list[Obj]:
    text = packaging.helm(
        "template", "stratus", str(packaging.CHART), "--namespace", "stratus-system", *args
    )
    return [d for d in yaml.safe_load_all(text) if d]


def policy(*args: str) -> Obj:
    (found,) = [d for d in render(*args) if d["kind"] == "NetworkPolicy"]
    return dict(found["spec"])


def tcp(port: int) -> list[Obj]:
    return [{"protocol": "TCP", "port": port}]


def test_off_by_default_in_the_chart_and_the_manifests() -> None:
    assert "NetworkPolicy" not in {d["kind"] for d in render()}
    assert "kind: NetworkPolicy" not in (packaging.REPO / "manifests" / "install.yaml").read_text()


def test_on_it_confines_the_operator_to_the_api_server_prometheus_and_dns() -> None:
    docs = render(*API, "--set-json", f"networkPolicy.ingressFrom=[{json.dumps(MONITORING)}]")
    spec = next(d for d in docs if d["kind"] == "NetworkPolicy")["spec"]
    pod = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]
    assert spec["podSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    # Ingress: the named peers, to the two ports the container names, nothing else.
    named_ports = {p["name"] for p in pod["spec"]["containers"][0]["ports"]}
    assert spec["ingress"] == [
        {
            "from": [MONITORING],
            "ports": [
                {"protocol": "TCP", "port": "metrics"},
                {"protocol": "TCP", "port": "health"},
            ],
        }
    ]
    assert named_ports == {"metrics", "health"}
    assert spec["egress"] == [
        {"to": [{"ipBlock": {"cidr": "10.0.0.1/32"}}], "ports": tcp(443) + tcp(6443)},
        # prometheusUrl's default, prometheus-operated.monitoring.svc:9090.
        {"to": [MONITORING], "ports": tcp(9090)},
        {"to": [KUBE_DNS], "ports": [{"protocol": "UDP", "port": 53}, *tcp(53)]},
    ]


def test_with_no_peers_named_nothing_may_connect() -> None:
    # A rule with an empty `from` would admit everyone; no rule at all admits no one.
    assert policy(*API)["ingress"] == []


def test_prometheus_egress_is_derived_from_the_addresses_by_kind_and_port() -> None:
    addresses = "http://10.1.2.3:9091,https://[fd00::5]/,http://thanos.obs.svc.cluster.local:10902"
    egress = policy(
        *API, "--set", f"prometheusAddresses={{{addresses}}}", "--set", "networkPolicy.dns=null"
    )["egress"]
    namespace = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "obs"}}}
    assert egress[1:] == [
        {"to": [MONITORING], "ports": tcp(9090)},
        {"to": [{"ipBlock": {"cidr": "10.1.2.3/32"}}], "ports": tcp(9091)},
        {"to": [{"ipBlock": {"cidr": "fd00::5/128"}}], "ports": tcp(443)},
        {"to": [namespace], "ports": tcp(10902)},
    ]


def test_a_prometheus_name_no_policy_can_match_fails_unless_the_admin_writes_the_rule() -> None:
    outside = ["--set", "prometheusUrl=https://prom.example.com"]
    with pytest.raises(RuntimeError, match=r"prom\.example\.com.*networkPolicy\.prometheusEgress"):
        render(*API, *outside)
    rule = {"to": [{"ipBlock": {"cidr": "203.0.113.0/24"}}], "ports": [{"port": 443}]}
    egress = policy(
        *API, *outside, "--set-json", f"networkPolicy.prometheusEgress=[{json.dumps(rule)}]"
    )["egress"]
    assert egress[1] == rule
    assert len(egress) == 3  # the API server, the admin's rule, DNS


def test_without_the_api_servers_addresses_helm_template_fails_naming_the_value() -> None:
    with pytest.raises(RuntimeError, match=r"networkPolicy\.apiServer\.cidrs"):
        render("--set", "networkPolicy.enabled=true")


def test_the_schema_refuses_an_empty_peer_and_an_unknown_key() -> None:
    with pytest.raises(RuntimeError, match=r"ingressFrom/0.*minProperties"):
        render(*API, "--set-json", "networkPolicy.ingressFrom=[{}]")
    with pytest.raises(RuntimeError, match="additional properties 'from' not allowed"):
        render(*API, "--set", "networkPolicy.from=x")
    with pytest.raises(RuntimeError, match="cidrs/0"):
        render("--set", "networkPolicy.apiServer.cidrs={kubernetes.default}")


def test_several_replicas_get_a_disruption_budget_and_spread_over_nodes() -> None:
    docs = render("--set", "replicas=2")
    (budget,) = [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    assert budget["spec"]["maxUnavailable"] == 1
    pod = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    (term,) = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    single = render()
    assert "PodDisruptionBudget" not in {d["kind"] for d in single}
    assert (
        "affinity"
        not in next(d for d in single if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    )


def test_helm_install_looks_the_api_server_up_and_the_api_server_accepts_the_policy(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    text = packaging.helm(
        "template",
        "stratus",
        str(packaging.CHART),
        "--namespace",
        namespace,
        "--dry-run=server",
        "--kubeconfig",
        str(cluster.kubeconfig),
        "--set",
        "networkPolicy.enabled=true",
        "--show-only",
        "templates/networkpolicy.yaml",
    )
    (doc,) = [d for d in yaml.safe_load_all(text) if d]
    service = client.CoreV1Api(cluster.api).read_namespaced_service("kubernetes", "default")
    slices = (
        client.DiscoveryV1Api(cluster.api)
        .list_namespaced_endpoint_slice(
            "default", label_selector="kubernetes.io/service-name=kubernetes"
        )
        .items
    )
    assert slices
    addresses = {service.spec.cluster_ip} | {
        a for s in slices for e in s.endpoints for a in e.addresses
    }
    ports = {p.port for p in service.spec.ports} | {p.port for s in slices for p in s.ports}
    api_rule = doc["spec"]["egress"][0]
    assert {p["ipBlock"]["cidr"].split("/")[0] for p in api_rule["to"]} == addresses
    assert {p["port"] for p in api_rule["ports"]} == ports | {443, 6443}
    rendered = tmp_path / "networkpolicy.yaml"
    rendered.write_text(text)
    applied = kubectl(cluster, "apply", "--dry-run=server", "-o", "json", "-f", str(rendered))
    assert json.loads(applied)["kind"] == "NetworkPolicy"
