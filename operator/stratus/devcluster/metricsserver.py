"""metrics-server beside the real node, so that HorizontalPodAutoscalers scale on the CPU its
pods really use. It runs on the host like the kubelet, listens on the node's bridge address, and
the API server's aggregator reaches it through a selectorless Service whose one endpoint is that
address."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from stratus.devcluster import binaries, pki

API_GROUP = "metrics.k8s.io"
API_VERSION = "v1beta1"
NAMESPACE = "kube-system"
NAME = "metrics-server"
# The fastest that metrics-server allows: an autoscaler sees new load within one resolution.
RESOLUTION = "10s"


def args(
    bins: binaries.Binaries,
    pki_dir: Path,
    kubeconfig: Path,
    node_ip: str,
    port: int,
    node_selector: str,
) -> list[str]:
    return [
        str(bins["metrics-server"]),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        f"--bind-address={node_ip}",
        f"--secure-port={port}",
        f"--tls-cert-file={pki_dir / 'metrics-server-serving.crt'}",
        f"--tls-private-key-file={pki_dir / 'metrics-server-serving.key'}",
        f"--requestheader-client-ca-file={pki_dir / 'ca.crt'}",
        f"--requestheader-allowed-names={pki.FRONT_PROXY.user}",
        f"--kubelet-certificate-authority={pki_dir / 'ca.crt'}",
        "--kubelet-preferred-address-types=InternalIP",
        # The kubelet listens on a free port, which it reports in its node's status.
        "--kubelet-use-node-status-port",
        # kwok's nodes have no kubelet to read.
        f"--node-selector={node_selector}",
        f"--metric-resolution={RESOLUTION}",
        # Each scrape must end within one resolution.
        "--kubelet-request-timeout=5s",
    ]


def apiserver_args(pki_dir: Path) -> list[str]:
    """The aggregation layer: how the API server proxies metrics.k8s.io to metrics-server."""
    stem = pki.FRONT_PROXY.file_stem
    return [
        f"--requestheader-client-ca-file={pki_dir / 'ca.crt'}",
        f"--requestheader-allowed-names={pki.FRONT_PROXY.user}",
        "--requestheader-username-headers=X-Remote-User",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        f"--proxy-client-cert-file={pki_dir / f'{stem}.crt'}",
        f"--proxy-client-key-file={pki_dir / f'{stem}.key'}",
        # Dial the endpoint itself: the API server runs on the host, outside kube-proxy's rules
        # for Services.
        "--enable-aggregator-routing=true",
    ]


def manifests(node_ip: str, port: int, ca_pem: bytes) -> list[dict[str, Any]]:
    """The Service, its one endpoint on the host, and the APIService that points at it."""
    meta = {"name": NAME, "namespace": NAMESPACE}
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta,
            "spec": {"ports": [{"name": "https", "port": 443, "targetPort": port}]},
        },
        {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": meta,
            "subsets": [
                {"addresses": [{"ip": node_ip}], "ports": [{"name": "https", "port": port}]}
            ],
        },
        {
            "apiVersion": "apiregistration.k8s.io/v1",
            "kind": "APIService",
            "metadata": {"name": f"{API_VERSION}.{API_GROUP}"},
            "spec": {
                "group": API_GROUP,
                "version": API_VERSION,
                "service": {"name": NAME, "namespace": NAMESPACE, "port": 443},
                "caBundle": base64.b64encode(ca_pem).decode(),
                "groupPriorityMinimum": 100,
                "versionPriority": 100,
            },
        },
    ]
