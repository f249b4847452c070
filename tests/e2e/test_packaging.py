"""The chart, the rendered manifests and the image, checked the way an auditor would: helm lint
and template, least privilege proven by running the operator under the chart's own
ServiceAccount token, the restricted Pod Security profile, alerts and metrics through promtool."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from stratus.api.common import GROUP, VERSION
from stratus.devcluster import kubeapi, packaging
from tests.builders import TrainingJobBuilder
from tests.conftest import Cluster, OperatorProcess, free_port
from tests.e2e.test_serving import Serving, service
from tests.prometheus import Prometheus
from tests.support import api_client, wait_for

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"
Obj = dict[str, Any]


def render(*args: str) -> list[Obj]:
    text = packaging.helm(
        "template", "stratus", str(packaging.CHART), "--namespace", "stratus-system", *args
    )
    return [d for d in yaml.safe_load_all(text) if d]


def rules_of(docs: list[Obj]) -> list[Obj]:
    return [rule for d in docs if d["kind"] in ("ClusterRole", "Role") for rule in d["rules"]]


def test_chart_lints_and_renders_least_privilege_by_default() -> None:
    assert "0 chart(s) failed" in packaging.helm("lint", str(packaging.CHART))
    docs = render()
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == [
        "ClusterRole",
        "ClusterRole",
        "ClusterRoleBinding",
        "ClusterRoleBinding",
        # TrainingJob, InferenceService, Budget and kopf's two peering kinds (templates, so
        # upgrades update them).
        "CustomResourceDefinition",
        "CustomResourceDefinition",
        "CustomResourceDefinition",
        "CustomResourceDefinition",
        "CustomResourceDefinition",
        "Deployment",
        "Service",
        "ServiceAccount",
    ]
    for rule in rules_of(docs):
        for key in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[key], rule
        assert "secrets" not in rule["resources"]
    pod = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def test_non_default_values_render_namespaced_roles_and_monitoring() -> None:
    docs = render("--values", str(DATA / "values-namespaced.yaml"))
    workload_roles = [d for d in docs if d["kind"] == "Role" and "trainingjobs" in str(d["rules"])]
    roles = {d["metadata"]["namespace"] for d in workload_roles}
    assert roles == {"ml-training", "ml-serving"}
    cluster_rules = [r for d in docs if d["kind"] == "ClusterRole" for r in d["rules"]]
    # Cluster-wide, only reading CRDs and the cluster-scoped Budgets (and writing their
    # status); everything else, peering included, per namespace.
    assert {g for r in cluster_rules for g in r["apiGroups"]} == {
        "apiextensions.k8s.io",
        "stratus.dev",
    }
    assert {
        res for r in cluster_rules if "stratus.dev" in r["apiGroups"] for res in r["resources"]
    } == {
        "budgets",
        "budgets/status",
    }
    # A Budget's Events go to `default`, as Events about cluster-scoped objects do: create only.
    (events,) = [d for d in docs if d["kind"] == "Role" and d not in workload_roles]
    assert events["metadata"]["namespace"] == "default"
    assert events["rules"] == [{"apiGroups": [""], "resources": ["events"], "verbs": ["create"]}]
    role_resources = {
        res for d in docs if d["kind"] == "Role" for r in d["rules"] for res in r["resources"]
    }
    assert {"trainingjobs", "jobs", "deployments", "kopfpeerings"} <= role_resources
    assert {d["metadata"]["namespace"] for d in docs if d["kind"] == "KopfPeering"} == roles
    assert {"ServiceMonitor", "PrometheusRule", "ConfigMap"} <= {d["kind"] for d in docs}
    (monitor,) = [d for d in docs if d["kind"] == "ServiceMonitor"]
    assert monitor["spec"]["endpoints"][0]["honorLabels"] is True
    env = {
        e["name"]: e.get("value")
        for e in next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"][
            "containers"
        ][0]["env"]
    }
    assert env["STRATUS_NAMESPACES"] == "ml-training,ml-serving"
    assert env["STRATUS_PEERING"] == "stratus"
    assert env["STRATUS_LOG_FORMAT"] == "json"


def test_a_wrong_value_fails_at_install_naming_it() -> None:
    with pytest.raises(RuntimeError, match=r"/spotPreset.*one of"):
        render("--set", "spotPreset=azure")
    with pytest.raises(RuntimeError, match="additional properties 'replica' not allowed"):
        render("--set", "replica=2")


def test_rendered_manifests_are_current() -> None:
    checked_in = (REPO / "manifests" / "install.yaml").read_text()
    assert checked_in == packaging.render_manifests(), "run `make manifests`"


def test_alert_rules_pass_promtool_check_and_their_unit_tests() -> None:
    check = subprocess.run(
        ["promtool", "check", "rules", str(packaging.CHART / "files" / "alerts.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "7 rules found" in check.stdout
    tests = subprocess.run(
        ["promtool", "test", "rules", "alerts_test.yaml"],
        cwd=DATA,
        capture_output=True,
        text=True,
        check=False,
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr


def test_a_real_scrape_passes_promtool_check_metrics(operator: OperatorProcess) -> None:
    scraped = operator.metrics()
    assert "stratus_reconcile_duration_seconds" in scraped
    check = subprocess.run(
        ["promtool", "check", "metrics"], input=scraped, capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr


# The session's CRDs were applied without Helm, so a release may not own them (helm refuses to
# adopt objects without its metadata); test_chart_upgrade installs them with the chart.
SESSION_CRDS = ("--set", "crds.enabled=false")


@pytest.fixture
def installed(cluster: Cluster) -> Iterator[str]:
    """The chart installed with helm into the test cluster, for its RBAC: its pod is pinned to
    no node, so that it never runs as a second operator beside the test's; uninstalled
    afterwards."""
    namespace = "stratus-system"
    base = ["--kubeconfig", str(cluster.kubeconfig)]
    packaging.helm(
        "upgrade",
        "--install",
        "stratus",
        str(packaging.CHART),
        "--namespace",
        namespace,
        "--create-namespace",
        "--wait=false",
        "--set-json",
        'nodeSelector={"stratus.dev/test":"no-node-has-this"}',
        *SESSION_CRDS,
        *base,
    )
    yield namespace
    packaging.helm("uninstall", "stratus", "--namespace", namespace, "--wait", *base)


def test_the_charts_rbac_is_enough_and_no_more(
    cluster: Cluster,
    installed: str,
    operator: OperatorProcess,
    namespace: str,
    tmp_path: Path,
) -> None:
    kubeconfig = kubeapi.service_account_kubeconfig(
        cluster.kubeconfig, installed, "stratus-operator", tmp_path / "sa.kubeconfig"
    )
    as_operator = api_client(kubeconfig)
    (pod,) = wait_for(
        "the chart's operator pod",
        lambda: client.CoreV1Api(cluster.api).list_namespaced_pod(installed).items,
    )
    assert pod.spec.node_name is None, "the chart's own operator must not run beside the test's"
    with pytest.raises(ApiException) as refused:
        client.CoreV1Api(as_operator).list_namespaced_secret(namespace)
    assert refused.value.status == 403

    operator.stop()  # only the ServiceAccount's operator acts during this test
    restricted = OperatorProcess(kubeconfig, tmp_path)
    restricted.start()
    try:
        custom = client.CustomObjectsApi(cluster.api)
        custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            "trainingjobs",
            TrainingJobBuilder("rbac-train")
            .spot()
            .workers(2)
            .runs_for("1s")
            .reports("/checkpoints/step-1", 1)
            .build(),
        )
        serving = Serving(cluster, namespace)
        obj = service("rbac-serve")
        obj["spec"]["autoscaling"] = {"metric": "cpu", "target": 60}
        serving.create(obj)
        wait_for(
            "the TrainingJob to succeed",
            lambda: (
                custom.get_namespaced_custom_object(
                    GROUP, VERSION, namespace, "trainingjobs", "rbac-train"
                )
                .get("status", {})
                .get("phase")
                == "Succeeded"
            ),
        )
        serving.wait("rbac-serve", "Healthy", lambda s: s.get("phase") == "Healthy")
        serving.set_image("rbac-serve", "serve:2")
        canary = serving.wait("rbac-serve", "paused", lambda s: s.get("phase") == "Paused")[
            "canaryRevision"
        ]
        serving.command("promote", "rbac-serve")
        serving.wait("rbac-serve", "promoted", lambda s: s.get("stableRevision") == canary)
        log = restricted.log.read_text()
        assert "Forbidden" not in log
        assert "403" not in log
    finally:
        restricted.stop()
        operator.start()


def test_the_chart_as_written_runs_the_operator_on_the_real_node_under_restricted(
    cluster: Cluster,
    real_node: str,
    namespace: str,
    operator: OperatorProcess,
    tmp_path: Path,
) -> None:
    """The README's install command, with the chart's default values and the image `make images`
    built: the pod is admitted under `restricted`, runs on the real node (never a simulated one),
    becomes Ready through /readyz, reconciles a TrainingJob, and Prometheus scrapes it through
    the pod network."""
    core = client.CoreV1Api(cluster.api)
    system = "stratus-restricted"
    core.create_namespace(
        {
            "metadata": {
                "name": system,
                "labels": {
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/enforce-version": "latest",
                },
            }
        }
    )
    base = ["--kubeconfig", str(cluster.kubeconfig), "--namespace", system]
    operator.stop()  # one operator at a time acts on the cluster's TrainingJobs
    prometheus: Prometheus | None = None
    try:
        wait_for(
            "the namespace's ServiceAccount",
            lambda: core.list_namespaced_service_account(system).items,
        )
        with pytest.raises(ApiException) as refused:  # the profile is really enforced
            core.create_namespaced_pod(
                system,
                {
                    "metadata": {"name": "loose"},
                    "spec": {"containers": [{"name": "c", "image": "busybox"}]},
                },
            )
        assert "violates PodSecurity" in refused.value.body
        packaging.helm(
            "install", "stratus", str(packaging.CHART), "--wait=false", *SESSION_CRDS, *base
        )

        def ready_pod() -> Any:
            pods = core.list_namespaced_pod(
                system, label_selector="app.kubernetes.io/instance=stratus"
            ).items
            return next(
                (
                    p
                    for p in pods
                    for c in p.status.conditions or []
                    if c.type == "Ready" and c.status == "True"
                ),
                None,
            )

        pod = wait_for("the operator pod Ready", ready_pod, timeout=120)
        assert pod.spec.node_name == real_node
        assert pod.spec.containers[0].security_context.read_only_root_filesystem
        assert pod.spec.containers[0].readiness_probe.http_get.path == "/readyz"
        events = core.list_namespaced_event(system).items
        assert not [e for e in events if e.reason == "FailedCreate"]

        custom = client.CustomObjectsApi(cluster.api)
        custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, "trainingjobs", TrainingJobBuilder("in-cluster").build()
        )
        batch = client.BatchV1Api(cluster.api)
        wait_for(
            "the in-cluster operator to create the attempt's Job",
            lambda: batch.list_namespaced_job(namespace).items,
            timeout=60,
        )

        server = prometheus = Prometheus(tmp_path, f"{pod.status.pod_ip}:8080", free_port())
        query = "stratus_reconcile_duration_seconds_count > 0"
        assert wait_for(
            "Prometheus to scrape the operator's reconciles", lambda: server.query(query)
        )
    finally:
        if prometheus is not None:
            prometheus.stop()
        packaging.helm("uninstall", "stratus", "--wait", *base)
        core.delete_namespace(system)
        operator.start()
