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
from tests.conftest import Cluster, OperatorProcess
from tests.e2e.test_serving import Serving, service
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
    roles = {d["metadata"]["namespace"] for d in docs if d["kind"] == "Role"}
    assert roles == {"ml-training", "ml-serving"}
    cluster_rules = [r for d in docs if d["kind"] == "ClusterRole" for r in d["rules"]]
    # Cluster-wide, only reading CRDs; everything else, peering included, per namespace.
    assert {g for r in cluster_rules for g in r["apiGroups"]} == {"apiextensions.k8s.io"}
    role_resources = {
        res for d in docs if d["kind"] == "Role" for r in d["rules"] for res in r["resources"]
    }
    assert {"trainingjobs", "jobs", "deployments", "kopfpeerings"} <= role_resources
    assert {d["metadata"]["namespace"] for d in docs if d["kind"] == "KopfPeering"} == roles
    assert {"ServiceMonitor", "PrometheusRule", "ConfigMap"} <= {d["kind"] for d in docs}
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
    assert "4 rules found" in check.stdout
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


@pytest.fixture
def installed(cluster: Cluster) -> Iterator[str]:
    """The chart installed with helm into the test cluster; uninstalled afterwards."""
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
        *base,
    )
    yield namespace
    packaging.helm("uninstall", "stratus", "--namespace", namespace, *base)


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


def test_the_operator_pod_is_admitted_under_the_restricted_profile(cluster: Cluster) -> None:
    core = client.CoreV1Api(cluster.api)
    namespace = "stratus-restricted"
    core.create_namespace(
        {
            "metadata": {
                "name": namespace,
                "labels": {
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/enforce-version": "latest",
                },
            }
        }
    )
    base = ["--kubeconfig", str(cluster.kubeconfig), "--namespace", namespace]
    try:
        wait_for(
            "the namespace's ServiceAccount",
            lambda: core.list_namespaced_service_account(namespace).items,
        )
        with pytest.raises(ApiException) as refused:  # the profile is really enforced
            core.create_namespaced_pod(
                namespace,
                {
                    "metadata": {"name": "loose"},
                    "spec": {"containers": [{"name": "c", "image": "busybox"}]},
                },
            )
        assert "violates PodSecurity" in refused.value.body
        packaging.helm("install", "stratus-psa", str(packaging.CHART), "--wait=false", *base)
        pods = wait_for(
            "the operator pod admitted",
            lambda: (
                core.list_namespaced_pod(
                    namespace, label_selector="app.kubernetes.io/instance=stratus-psa"
                ).items
            ),
        )
        assert pods[0].spec.containers[0].security_context.read_only_root_filesystem
        events = core.list_namespaced_event(namespace).items
        assert not [e for e in events if e.reason == "FailedCreate"]
    finally:
        packaging.helm("uninstall", "stratus-psa", *base)
        core.delete_namespace(namespace)
