"""`helm upgrade` carries a CRD change to the cluster (the CRDs are templates, not the crds/
folder helm never upgrades), resources survive it, and `helm uninstall` keeps the CRDs (and with
them every resource) unless crds.keep is false. On a bare control plane of its own, beside the
session's cluster: the session's CRDs are applied by kubectl, and its tests need them as they
are."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from stratus.api.common import GROUP, VERSION
from stratus.devcluster import packaging
from stratus.devcluster.cluster import LocalCluster
from tests.builders import TrainingJobBuilder
from tests.support import api_client, wait_for

CRD = f"trainingjobs.{GROUP}"
NAMESPACE = "stratus-system"
# A field the next chart's TrainingJob schema adds to spec.
ADDED = "upgradeNote"


@pytest.fixture
def bare(tmp_path: Path) -> Iterator[LocalCluster]:
    """A control plane without nodes: helm and the API server are all this test needs."""
    local = LocalCluster(tmp_path / "cluster", pools=())
    local.up()
    try:
        yield local
    finally:
        local.down()


def next_chart(tmp_path: Path) -> Path:
    """A copy of the chart, one version on, whose TrainingJob CRD knows one more spec field."""
    chart = tmp_path / "next" / "stratus"
    shutil.copytree(packaging.CHART, chart)
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    meta["version"] = "0.1.1-next"
    (chart / "Chart.yaml").write_text(yaml.safe_dump(meta))
    path = chart / "files" / "crds" / f"{CRD}.yaml"
    crd = yaml.safe_load(path.read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert ADDED not in spec["properties"]
    spec["properties"][ADDED] = {"type": "string", "description": "Added by the next chart."}
    path.write_text(yaml.safe_dump(crd, sort_keys=False))
    return chart


def spec_properties(ext: client.ApiextensionsV1Api) -> dict[str, Any]:
    crd = ext.read_custom_resource_definition(CRD)
    schema = crd.spec.versions[0].schema.open_apiv3_schema
    return dict(schema.properties["spec"].properties)


def test_upgrade_updates_the_crds_keeps_resources_and_uninstall_keeps_the_crds(
    bare: LocalCluster, tmp_path: Path
) -> None:
    api = api_client(bare.kubeconfig)
    ext = client.ApiextensionsV1Api(api)
    custom = client.CustomObjectsApi(api)
    apps = client.AppsV1Api(api)
    kube = ["--kubeconfig", str(bare.kubeconfig), "--namespace", NAMESPACE]

    def established() -> bool:
        try:
            crd = ext.read_custom_resource_definition(CRD)
        except ApiException:
            return False
        return any(
            c.type == "Established" and c.status == "True" for c in crd.status.conditions or []
        )

    def tj(name: str, note: str | None = None) -> dict[str, Any]:
        obj = TrainingJobBuilder(name).build()
        if note is not None:
            obj["spec"][ADDED] = note
        return obj

    def read(name: str) -> dict[str, Any]:
        return dict(
            custom.get_namespaced_custom_object(GROUP, VERSION, "default", "trainingjobs", name)
        )

    # The first release; no node runs its pod, and none needs to.
    packaging.helm(
        "install", "stratus", str(packaging.CHART), "--create-namespace", "--wait=false", *kube
    )
    wait_for("the chart's TrainingJob CRD Established", established)
    assert ADDED not in spec_properties(ext)
    crd = ext.read_custom_resource_definition(CRD)
    assert crd.metadata.annotations["helm.sh/resource-policy"] == "keep"
    assert crd.metadata.annotations["meta.helm.sh/release-name"] == "stratus"
    custom.create_namespaced_custom_object(
        GROUP, VERSION, "default", "trainingjobs", tj("before", "pruned")
    )
    before = read("before")
    assert ADDED not in before["spec"], "the first CRD prunes the field it does not know"

    # The upgrade: the cluster's CRD is the next chart's.
    packaging.helm("upgrade", "stratus", str(next_chart(tmp_path)), "--wait=false", *kube)
    wait_for("the upgraded schema", lambda: ADDED in spec_properties(ext))
    wait_for("the upgraded CRD Established", established)
    after = read("before")
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    assert after["spec"] == before["spec"]
    # The API server now keeps the new field: the schema in force is the upgraded one. It
    # rebuilds a resource's storage from its own watch of the CRD, a moment after the write:
    # a dry run shows when it has.
    wait_for(
        "the API server serving the upgraded schema",
        lambda: (
            ADDED
            in custom.create_namespaced_custom_object(
                GROUP, VERSION, "default", "trainingjobs", tj("after", "kept"), dry_run="All"
            )["spec"]
        ),
    )
    custom.create_namespaced_custom_object(
        GROUP, VERSION, "default", "trainingjobs", tj("after", "kept")
    )
    assert read("after")["spec"][ADDED] == "kept"
    history = packaging.helm("history", "stratus", "--output", "yaml", *kube)
    assert [r["chart"] for r in yaml.safe_load(history)] == ["stratus-0.1.0", "stratus-0.1.1-next"]

    # Uninstall: the operator goes, the CRDs (keep) and so every TrainingJob stay.
    packaging.helm("uninstall", "stratus", "--wait", *kube)
    assert not apps.list_namespaced_deployment(NAMESPACE).items
    assert ADDED in spec_properties(ext)
    assert read("before")["metadata"]["uid"] == before["metadata"]["uid"]
    assert read("after")["spec"][ADDED] == "kept"

    # A new install adopts the kept CRDs (they still name the release); with crds.keep=false,
    # the next uninstall deletes them, and their resources with them.
    packaging.helm(
        "install",
        "stratus",
        str(packaging.CHART),
        "--set",
        "crds.keep=false",
        "--wait=false",
        *kube,
    )
    wait_for(
        "the reinstalled schema, the current chart's again",
        lambda: ADDED not in spec_properties(ext),
    )
    # Helm leaves the live object's keep annotation (it removes only what it set), but decides
    # what uninstall keeps from the release's manifest, which now has none.
    manifest = packaging.helm("get", "manifest", "stratus", *kube)
    assert "helm.sh/resource-policy" not in manifest
    released = [c for c in ext.list_custom_resource_definition().items if ours(c)]
    assert CRD in {c.metadata.name for c in released}

    def serving() -> bool:
        """Every CRD the reinstall wrote serves lists again. A CRD written anew has its
        storage made again; deleted within that moment (the uninstall came 0.1 s after the
        reinstall), the API server's CRD finalizer failed to list its resources ("storage is
        (re)initializing") and did not finish for minutes (its log, on a full run)."""
        for c in released:
            version = next(v.name for v in c.spec.versions if v.storage)
            try:
                custom.list_cluster_custom_object(c.spec.group, version, c.spec.names.plural)
            except ApiException:
                return False
        return True

    wait_for("the reinstalled CRDs serving their resources", serving)
    time.sleep(2)  # the storage is made again on each write of a CRD: past the last one
    wait_for("the reinstalled CRDs still serving their resources", serving)
    # No --wait: helm would wait for the CRDs in silence. A CRD is gone once the API server has
    # deleted its resources; the wait below names what is left, and why, if it takes too long.
    packaging.helm("uninstall", "stratus", *kube)
    left: list[str] = []

    def gone() -> bool:
        left[:] = [
            f"{c.metadata.name} ("
            + "; ".join(f"{d.type}={d.status} {d.reason}: {d.message}" for d in c.status.conditions)
            + ")"
            for c in ext.list_custom_resource_definition().items
            if ours(c)
        ]
        return not left

    try:
        wait_for("the release's CRDs deleted with crds.keep=false", gone, timeout=180)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; left: {left}") from None
    assert not apps.list_namespaced_deployment(NAMESPACE).items


def ours(crd: Any) -> bool:
    return (crd.metadata.annotations or {}).get("meta.helm.sh/release-name") == "stratus"
