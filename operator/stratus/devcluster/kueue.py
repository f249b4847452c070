"""Kueue beside the local control plane (`stratus dev up --kueue`, the Kueue e2e tests): the
`kueue` manager built from its Go module runs on the host like the other components, against the
API server on loopback, with its CRDs from the same module.

No webhook configuration is registered: the operator creates every queued Job suspended itself,
which is all Kueue's Job webhook would add, and the validating webhooks only guard hand-written
queue objects. Kueue still serves its webhook server (its readiness waits for it), with a
serving pair signed by the cluster CA; its metrics server gets a pair from the same CA."""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from stratus.devcluster import binaries, nodepools, pki

NAME = "kueue"
# Ports besides its health port (which is the component's own).
INTERNAL_PORTS = ("kueue-metrics", "kueue-webhook")
GROUP = "kueue.x-k8s.io"
VERSION = "v1beta2"
# Every CRD of the module: Kueue's manager watches them all and does not start without one.
CRD_PLURALS = (
    "admissionchecks",
    "clusterqueues",
    "cohorts",
    "localqueues",
    "multikueueclusters",
    "multikueueconfigs",
    "provisioningrequestconfigs",
    "resourceflavors",
    "topologies",
    "workloadpriorityclasses",
    "workloads",
)
CRD_FILES = tuple(f"config/components/crd/bases/{GROUP}_{p}.yaml" for p in CRD_PLURALS)
MODULE = "sigs.k8s.io/kueue"
# The queues `stratus dev up --kueue` makes: one flavor per capacity type of the simulated pools,
# spot first, and one LocalQueue in the default namespace.
SPOT_FLAVOR = "spot"
ON_DEMAND_FLAVOR = "on-demand"
CLUSTER_QUEUE = "gpu"
LOCAL_QUEUE = "gpu"
# Kueue admits a workload only when its ClusterQueue covers every resource its pods request.
COVERED = ("cpu", "memory", nodepools.GPU_RESOURCE)
# The manager's own metrics certificate is read from here (see hack/build-binaries.sh).
METRICS_CERT_ENV = "KUEUE_METRICS_CERT_DIR"

Manifest = dict[str, Any]


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def webhook_certs(self) -> Path:
        return self.root / "webhook-certs"

    @property
    def metrics_certs(self) -> Path:
        return self.root / "metrics-certs"


@dataclass(frozen=True)
class Ports:
    health: int
    metrics: int
    webhook: int


def configuration(ports: Ports, layout: Layout) -> Manifest:
    """Kueue's configuration file: loopback ports, no leader election (one replica), Jobs only
    with a queue name, certificates from the state directory."""
    return {
        "apiVersion": "config.kueue.x-k8s.io/v1beta2",
        "kind": "Configuration",
        # An existing namespace: Kueue creates none, and with its own certificate management
        # off it keeps nothing there.
        "namespace": "kube-system",
        "health": {"healthProbeBindAddress": f"127.0.0.1:{ports.health}"},
        "metrics": {"bindAddress": f"127.0.0.1:{ports.metrics}"},
        "webhook": {
            "host": "127.0.0.1",
            "port": ports.webhook,
            "certDir": str(layout.webhook_certs),
        },
        "leaderElection": {"leaderElect": False},
        "internalCertManagement": {"enable": False},
        # A Job without the queue label is not Kueue's: the operator's other Jobs run as before.
        "manageJobsWithoutQueueName": False,
        "integrations": {"frameworks": ["batch/job"]},
        "clientConnection": {"qps": 50, "burst": 100},
    }


def args(binary: Path, kubeconfig: Path, layout: Layout) -> list[str]:
    """Its command line, through env(1) so that a restart from the saved arguments keeps the
    metrics certificate's directory."""
    return [
        "env",
        f"{METRICS_CERT_ENV}={layout.metrics_certs}",
        str(binary),
        f"--config={layout.config}",
        f"--kubeconfig={kubeconfig}",
        # Its visibility API server reads certificates from a fixed /visibility.
        "--feature-gates=VisibilityOnDemand=false",
        "--zap-log-level=info",
    ]


def health_url(health_port: int) -> str:
    """Ready once its caches are synced and its webhook server listens."""
    return f"http://127.0.0.1:{health_port}/readyz"


def prepare(layout: Layout, ports: Ports, ca_dir: Path | None) -> None:
    """Write the configuration and the serving pairs, signed by the CA in `ca_dir` (the
    cluster's), or by a CA of their own for a cluster whose CA key is not here."""
    shutil.rmtree(layout.root, ignore_errors=True)
    layout.root.mkdir(parents=True)
    ca = pki.Authority.load(ca_dir) if ca_dir else pki.Authority.create("stratus-kueue-ca")
    for directory in (layout.webhook_certs, layout.metrics_certs):
        directory.mkdir()
        ca.issue(
            directory,
            "tls",
            pki.name("kueue"),
            ExtendedKeyUsageOID.SERVER_AUTH,
            [x509.DNSName("localhost"), pki.ip_san("127.0.0.1")],
        )
    layout.config.write_text(yaml.safe_dump(configuration(ports, layout)))


def crd_files() -> list[Path]:
    from stratus.devcluster import thirdparty  # noqa: PLC0415

    return thirdparty.module_files(MODULE, binaries.versions()["KUEUE_VERSION"], CRD_FILES)


def _quota(name: str, gpus: int, cpu: str, memory: str) -> Manifest:
    return {
        "name": name,
        "resources": [
            {"name": "cpu", "nominalQuota": cpu},
            {"name": "memory", "nominalQuota": memory},
            {"name": nodepools.GPU_RESOURCE, "nominalQuota": gpus},
        ],
    }


def flavors(capacity_label: str = nodepools.CAPACITY_TYPE_LABEL) -> list[Manifest]:
    """ResourceFlavors for spot and on-demand GPUs. The spot one names the spot nodes' taint, so
    Kueue gives it only to workloads that tolerate it (a TrainingJob with spot enabled)."""
    spot_taint = {"key": capacity_label, "value": "spot", "effect": "NoSchedule"}
    return [
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ResourceFlavor",
            "metadata": {"name": SPOT_FLAVOR},
            "spec": {"nodeLabels": {capacity_label: "spot"}, "nodeTaints": [spot_taint]},
        },
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ResourceFlavor",
            "metadata": {"name": ON_DEMAND_FLAVOR},
            "spec": {"nodeLabels": {capacity_label: "on-demand"}},
        },
    ]


def cluster_queue(
    name: str,
    spot_gpus: int,
    on_demand_gpus: int,
    cpu: str = "1000",
    memory: str = "10Ti",
    preemption: Manifest | None = None,
) -> Manifest:
    """A ClusterQueue with a GPU quota on each flavor, spot tried first; cpu and memory are
    covered (Kueue admits nothing it does not cover) with room to spare."""
    spec: Manifest = {
        "namespaceSelector": {},
        "resourceGroups": [
            {
                "coveredResources": list(COVERED),
                "flavors": [
                    _quota(SPOT_FLAVOR, spot_gpus, cpu, memory),
                    _quota(ON_DEMAND_FLAVOR, on_demand_gpus, cpu, memory),
                ],
            }
        ],
    }
    if preemption:
        spec["preemption"] = preemption
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ClusterQueue",
        "metadata": {"name": name},
        "spec": spec,
    }


def local_queue(namespace: str, name: str, cluster_queue_name: str) -> Manifest:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "LocalQueue",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"clusterQueue": cluster_queue_name},
    }


def default_queues(pools: Iterable[nodepools.NodePool]) -> list[Manifest]:
    """What `stratus dev up --kueue` makes: the flavors, a ClusterQueue whose GPU quota is what
    the simulated pools hold of each capacity type, and LocalQueue `gpu` in `default`."""
    gpus = {"spot": 0, "on-demand": 0}
    for pool in pools:
        gpus[pool.capacity_type] += pool.gpus * pool.count
    return [
        *flavors(),
        cluster_queue(CLUSTER_QUEUE, gpus["spot"], gpus["on-demand"]),
        local_queue("default", LOCAL_QUEUE, CLUSTER_QUEUE),
    ]
