"""The real node's pure parts: its network, its configs, its command lines, and what teardown
reads from iptables."""

from __future__ import annotations

import ipaddress
import tomllib
from pathlib import Path
from typing import Any

import pytest

from stratus.devcluster import binaries, cluster, metricsserver, nodepools, pki, realnode

NET = realnode.NodeNetwork("stratusbr1", ipaddress.IPv4Network("10.244.1.0/24"))


def bins() -> binaries.Binaries:
    return binaries.Binaries(
        {n: Path(f"/bin/{n}") for _, (_, names) in binaries.COMPONENTS.items() for n in names}
    )


def test_the_pod_network_avoids_every_route_of_the_host() -> None:
    taken = [ipaddress.IPv4Network("10.244.1.0/24"), ipaddress.IPv4Network("10.244.2.128/25")]
    net = realnode.choose_network(taken)
    assert net.subnet == ipaddress.IPv4Network("10.244.3.0/24")
    assert net.node_ip == "10.244.3.1"
    assert net.bridge == "stratusbr3"
    assert len(net.bridge) <= 15  # a Linux interface name
    with pytest.raises(realnode.RealNodeError, match="no free pod network"):
        realnode.choose_network([ipaddress.IPv4Network("10.244.0.0/16")])


def test_the_node_plays_a_gpu_pool_through_labels_and_status() -> None:
    node = realnode.RealNode(gpus=4, gpu_product="NVIDIA-A10G", capacity_type="on-demand")
    labels = node.node_labels()
    assert labels[nodepools.GPU_PRODUCT_LABEL] == "NVIDIA-A10G"
    assert labels[nodepools.CAPACITY_TYPE_LABEL] == "on-demand"
    assert labels[realnode.REAL_NODE_LABEL] == "true"
    assert node.status_patch()["status"]["capacity"] == {"nvidia.com/gpu": "4"}
    assert realnode.RealNode(gpus=0).status_patch() == {}


def test_simulated_nodes_repel_untolerating_pods_only_beside_a_real_node() -> None:
    pool = nodepools.NodePool(name="cpu", count=1)
    assert nodepools.node_manifest(pool, 0)["spec"]["taints"] == []
    taints = nodepools.node_manifest(pool, 0, beside_real=True)["spec"]["taints"]
    assert taints == [nodepools.SIMULATED_TAINT]
    toleration = nodepools.SIMULATED_TOLERATION
    assert (toleration["key"], toleration["effect"]) == (
        nodepools.SIMULATED_TAINT["key"],
        nodepools.SIMULATED_TAINT["effect"],
    )


def test_containerd_keeps_everything_but_its_sockets_under_the_state_dir(tmp_path: Path) -> None:
    layout = realnode.NodeLayout(tmp_path / "node")
    config = tomllib.loads(realnode.containerd_config(layout))
    cri = config["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["sandbox_image"] == realnode.PAUSE_IMAGE
    assert cri["restrict_oom_score_adj"] is True
    assert cri["netns_mounts_under_state_dir"] is True
    assert cri["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is False
    for path in (config["root"], config["state"]):
        assert path.startswith(str(tmp_path))
    assert config["grpc"]["address"].startswith(str(realnode.SOCKETS_DIR))
    assert cri["cni"]["conf_dir"].startswith(str(tmp_path))


def test_kubelet_and_kube_proxy_configs(tmp_path: Path) -> None:
    layout = realnode.NodeLayout(tmp_path / "node")
    node = realnode.RealNode(taints=[nodepools.Taint(key="dedicated", value="ml")])
    ports = {"kubelet": 1, "kubelet-healthz": 2, "kube-proxy": 3, "kube-proxy-metrics": 4}
    kubelet = realnode.kubelet_config(layout, NET, node, tmp_path / "pki", ports)
    assert kubelet["cgroupDriver"] == "cgroupfs"
    assert (kubelet["failSwapOn"], kubelet["failCgroupV1"], kubelet["readOnlyPort"]) == (
        False,
        False,
        0,
    )
    assert kubelet["address"] == NET.node_ip
    assert kubelet["healthzBindAddress"] == "127.0.0.1"
    assert kubelet["authentication"]["anonymous"]["enabled"] is False
    assert kubelet["registerWithTaints"] == [
        {"key": "dedicated", "value": "ml", "effect": "NoSchedule"}
    ]
    proxy = realnode.kube_proxy_config(NET, node, tmp_path / "kp.kubeconfig", ports)
    assert proxy["mode"] == "iptables"
    assert proxy["hostnameOverride"] == node.name
    assert proxy["healthzBindAddress"] == "127.0.0.1:3"
    assert proxy["conntrack"]["maxPerCore"] == 0  # the host's conntrack settings are left alone
    conflist = realnode.cni_conflist(NET, layout)
    bridge = conflist["plugins"][0]
    assert bridge["bridge"] == NET.bridge
    assert bridge["ipMasq"] is False  # pods never reach past the host
    assert bridge["ipam"]["dataDir"].startswith(str(tmp_path))


def test_with_a_real_node_the_api_server_listens_on_its_bridge_and_dials_kubelets_by_ip(
    tmp_path: Path,
) -> None:
    layout = cluster.Layout(tmp_path)
    names = (*cluster.COMPONENTS, *cluster.NODE_COMPONENTS, *cluster.EXTRA_PORTS)
    ports = {name: 10000 + i for i, name in enumerate(names)}
    node = (realnode.RealNode(), NET)
    apiserver = cluster.component_args(layout, "kube-apiserver", ports, bins(), tmp_path, node)
    assert f"--advertise-address={NET.node_ip}" in apiserver
    assert "--kubelet-preferred-address-types=InternalIP" in apiserver
    assert "--endpoint-reconciler-type=none" not in apiserver
    for name in cluster.NODE_COMPONENTS:
        args = cluster.component_args(layout, name, ports, bins(), tmp_path, node)
        assert any(str(tmp_path) in a for a in args), name  # how `down` finds its processes
    kubelet = cluster.component_args(layout, "kubelet", ports, bins(), tmp_path, node)
    assert f"--node-ip={NET.node_ip}" in kubelet
    assert "--hostname-override=real-0" in kubelet


def test_metrics_server_listens_on_the_bridge_behind_the_api_servers_aggregator(
    tmp_path: Path,
) -> None:
    layout = cluster.Layout(tmp_path)
    names = (*cluster.COMPONENTS, *cluster.NODE_COMPONENTS, *cluster.EXTRA_PORTS)
    ports = {name: 10000 + i for i, name in enumerate(names)}
    node = (realnode.RealNode(), NET)
    server = cluster.component_args(layout, "metrics-server", ports, bins(), tmp_path, node)
    assert f"--bind-address={NET.node_ip}" in server
    assert f"--node-selector={realnode.REAL_NODE_LABEL}=true" in server
    apiserver = cluster.component_args(layout, "kube-apiserver", ports, bins(), tmp_path, node)
    assert "--enable-aggregator-routing=true" in apiserver
    assert f"--requestheader-allowed-names={pki.FRONT_PROXY.user}" in apiserver
    service, endpoints, api = metricsserver.manifests(NET.node_ip, 4443, b"CA")
    assert endpoints["subsets"][0]["addresses"] == [{"ip": NET.node_ip}]
    assert api["spec"]["service"] == {
        "name": service["metadata"]["name"],
        "namespace": "kube-system",
        "port": 443,
    }


def test_node_certificates_name_the_node_and_its_ip(tmp_path: Path) -> None:
    from cryptography import x509  # noqa: PLC0415

    pki.write_pki(tmp_path, "10.96.0.1", "real-0", NET.node_ip)
    serving = x509.load_pem_x509_certificate((tmp_path / "kubelet-serving.crt").read_bytes())
    sans = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address(NET.node_ip) in sans.get_values_for_type(x509.IPAddress)
    metrics = x509.load_pem_x509_certificate((tmp_path / "metrics-server-serving.crt").read_bytes())
    names = metrics.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    # What the aggregator checks when it dials the Service's endpoint.
    assert names.get_values_for_type(x509.DNSName) == [pki.METRICS_SERVER_SERVICE]
    client = x509.load_pem_x509_certificate((tmp_path / "node-real-0.crt").read_bytes())
    assert client.subject.rfc4514_string() == "CN=system:node:real-0,O=system:nodes"


def test_teardown_finds_our_chains_and_the_jumps_into_them() -> None:
    dump = """*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:CNI-HOSTPORT-DNAT - [0:0]
:DOCKER - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -j CNI-HOSTPORT-DNAT
-A OUTPUT -j DOCKER
-A KUBE-SERVICES -j RETURN
COMMIT
*filter
:INPUT ACCEPT [0:0]
:KUBE-FIREWALL - [0:0]
-A INPUT -j KUBE-FIREWALL
COMMIT
"""
    ours, jumps = realnode.chains(dump)
    assert ours == {"nat": ["KUBE-SERVICES", "CNI-HOSTPORT-DNAT"], "filter": ["KUBE-FIREWALL"]}
    assert jumps == [
        ("nat", 'PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES'),
        ("nat", "OUTPUT -j CNI-HOSTPORT-DNAT"),
        ("filter", "INPUT -j KUBE-FIREWALL"),
    ]


def test_examples_are_made_to_run_simulated_without_losing_their_own_placement() -> None:
    doc: dict[str, Any] = {
        "kind": "TrainingJob",
        "spec": {
            "image": "x",
            "podTemplate": {
                "spec": {
                    "tolerations": [{"key": "team", "operator": "Exists"}],
                    "nodeSelector": {"zone": "a"},
                }
            },
        },
    }
    spec = nodepools.simulated(doc)["spec"]["podTemplate"]["spec"]
    assert spec["tolerations"] == [
        {"key": "team", "operator": "Exists"},
        nodepools.SIMULATED_TOLERATION,
    ]
    assert spec["nodeSelector"] == {"zone": "a", "type": "kwok"}
    assert doc["spec"]["podTemplate"]["spec"]["nodeSelector"] == {"zone": "a"}  # not mutated
    claim = {"kind": "PersistentVolumeClaim", "spec": {}}
    assert nodepools.simulated(claim) is claim


def test_containerd_sockets_fit_however_long_the_state_dir() -> None:
    deep = realnode.NodeLayout(Path("/tmp") / ("d" * 200) / "node")
    # What a unix socket path may hold, with the suffix containerd adds for ttrpc.
    assert len(str(deep.socket) + ".ttrpc") < 104
    assert deep.socket != realnode.NodeLayout(Path("/tmp/other/node")).socket
