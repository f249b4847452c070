"""Kueue beside the local control plane: its configuration, certificates, command line and the
queues `stratus dev up --kueue` makes."""

from __future__ import annotations

from pathlib import Path

import yaml
from cryptography import x509

from stratus.devcluster import binaries, cluster, kueue, nodepools, pki

PORTS = kueue.Ports(health=18081, metrics=18443, webhook=19443)


def test_the_configuration_keeps_kueue_on_loopback_to_queued_jobs_only(tmp_path: Path) -> None:
    layout = kueue.Layout(tmp_path / "kueue")
    cfg = kueue.configuration(PORTS, layout)
    assert cfg["apiVersion"] == "config.kueue.x-k8s.io/v1beta2"
    assert cfg["manageJobsWithoutQueueName"] is False
    assert cfg["integrations"] == {"frameworks": ["batch/job"]}
    assert cfg["internalCertManagement"] == {"enable": False}
    assert cfg["leaderElection"] == {"leaderElect": False}
    assert cfg["health"]["healthProbeBindAddress"] == "127.0.0.1:18081"
    assert cfg["metrics"]["bindAddress"] == "127.0.0.1:18443"
    assert cfg["webhook"] == {
        "host": "127.0.0.1",
        "port": 19443,
        "certDir": str(layout.webhook_certs),
    }
    assert kueue.health_url(PORTS.health) == "http://127.0.0.1:18081/readyz"


def test_prepare_signs_its_serving_pairs_with_the_cluster_ca(tmp_path: Path) -> None:
    pki.write_pki(tmp_path / "pki", "10.96.0.1")
    layout = kueue.Layout(tmp_path / "kueue")
    kueue.prepare(layout, PORTS, tmp_path / "pki")
    ca = x509.load_pem_x509_certificate((tmp_path / "pki" / "ca.crt").read_bytes())
    for directory in (layout.webhook_certs, layout.metrics_certs):
        cert = x509.load_pem_x509_certificate((directory / "tls.crt").read_bytes())
        cert.verify_directly_issued_by(ca)
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert "localhost" in sans.get_values_for_type(x509.DNSName)
        assert (directory / "tls.key").stat().st_mode & 0o077 == 0
    written = yaml.safe_load(layout.config.read_text())
    assert written == kueue.configuration(PORTS, layout)


def test_prepare_without_the_cluster_ca_signs_with_a_ca_of_its_own(tmp_path: Path) -> None:
    layout = kueue.Layout(tmp_path / "kueue")
    kueue.prepare(layout, PORTS, None)
    cert = x509.load_pem_x509_certificate((layout.webhook_certs / "tls.crt").read_bytes())
    assert "stratus-kueue-ca" in cert.issuer.rfc4514_string()


def test_the_command_line_names_the_state_directory_and_the_metrics_certificates(
    tmp_path: Path,
) -> None:
    layout = kueue.Layout(tmp_path / "kueue")
    args = kueue.args(Path("/bin/kueue"), tmp_path / "kueue.kubeconfig", layout)
    assert args[:3] == ["env", f"KUEUE_METRICS_CERT_DIR={layout.metrics_certs}", "/bin/kueue"]
    assert f"--config={layout.config}" in args
    assert f"--kubeconfig={tmp_path / 'kueue.kubeconfig'}" in args
    # Its visibility server would read certificates from a fixed /visibility.
    assert "--feature-gates=VisibilityOnDemand=false" in args


def test_the_cluster_runs_kueue_with_its_own_identity(tmp_path: Path) -> None:
    layout = cluster.Layout(tmp_path)
    ports = {name: 1000 + i for i, name in enumerate((*cluster.COMPONENTS, *cluster.EXTRA_PORTS))}
    args = cluster.component_args(
        layout, kueue.NAME, ports, binaries.Binaries({}), tmp_path / "admin"
    )
    assert f"--kubeconfig={layout.component_kubeconfig(pki.KUEUE)}" not in args
    # Without its identity's kubeconfig (a cluster from before it existed): the one given.
    assert f"--kubeconfig={tmp_path / 'admin'}" in args
    layout.component_kubeconfig(pki.KUEUE).write_text("{}")
    args = cluster.component_args(
        layout, kueue.NAME, ports, binaries.Binaries({}), tmp_path / "admin"
    )
    assert f"--kubeconfig={layout.component_kubeconfig(pki.KUEUE)}" in args
    # A restart knows each process's own port only.
    assert cluster._health_url(kueue.NAME, {"kueue": 5}, args) == "http://127.0.0.1:5/readyz"
    assert pki.KUEUE in pki.CLIENT_IDENTITIES


def test_the_default_queues_quota_what_the_pools_hold_spot_first() -> None:
    pools = (
        nodepools.NodePool(name="od", count=2, gpus=8, capacity_type="on-demand"),
        nodepools.NodePool(name="sp", count=3, gpus=4, capacity_type="spot"),
        nodepools.NodePool(name="cpu", count=2),
    )
    spot, on_demand, cq, lq = kueue.default_queues(pools)
    assert spot["spec"]["nodeLabels"] == {nodepools.CAPACITY_TYPE_LABEL: "spot"}
    # Only a workload that tolerates the spot taint is given the spot flavor.
    assert spot["spec"]["nodeTaints"] == [
        {"key": nodepools.CAPACITY_TYPE_LABEL, "value": "spot", "effect": "NoSchedule"}
    ]
    assert on_demand["spec"]["nodeLabels"] == {nodepools.CAPACITY_TYPE_LABEL: "on-demand"}
    (group,) = cq["spec"]["resourceGroups"]
    assert group["coveredResources"] == ["cpu", "memory", "nvidia.com/gpu"]
    gpus = {
        f["name"]: next(r["nominalQuota"] for r in f["resources"] if r["name"] == "nvidia.com/gpu")
        for f in group["flavors"]
    }
    assert list(gpus.items()) == [("spot", 12), ("on-demand", 16)]
    assert lq["metadata"] == {"name": "gpu", "namespace": "default"}
    assert lq["spec"] == {"clusterQueue": "gpu"}
