"""The chart's values, each rendered by the pinned helm (`helm template`, no cluster): CRDs as
templates behind crds.enabled with the keep policy, name overrides, image pull secrets, pod
labels and annotations, and an image by digest. Fails, naming the build command, when helm is not
built (`make lint-tools`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from stratus.config import from_env
from stratus.cost.prices import Price
from stratus.devcluster import packaging

Obj = dict[str, Any]
CRDS = packaging.REPO / "crds"
KEEP = "helm.sh/resource-policy"
DIGEST = "sha256:" + "0123456789abcdef" * 4


def render(*args: str) -> list[Obj]:
    text = packaging.helm(
        "template", "stratus", str(packaging.CHART), "--namespace", "stratus-system", *args
    )
    return [d for d in yaml.safe_load_all(text) if d]


def of_kind(docs: list[Obj], kind: str) -> list[Obj]:
    return [d for d in docs if d["kind"] == kind]


def deployment(docs: list[Obj]) -> Obj:
    (found,) = of_kind(docs, "Deployment")
    return found


def generated_crds() -> dict[str, Obj]:
    docs = [d for p in sorted(CRDS.glob("*.yaml")) for d in yaml.safe_load_all(p.read_text())]
    return {d["metadata"]["name"]: d for d in docs if d}


def test_the_crds_are_templates_equal_to_the_generated_ones_and_kept_by_default() -> None:
    rendered = of_kind(render(), "CustomResourceDefinition")
    generated = generated_crds()
    assert sorted(d["metadata"]["name"] for d in rendered) == sorted(generated)
    for crd in rendered:
        meta = crd["metadata"]
        assert meta["annotations"] == {KEEP: "keep"}
        # The release's labels join the generator's own.
        assert meta["labels"]["app.kubernetes.io/part-of"] == "stratus"
        assert meta["labels"]["app.kubernetes.io/instance"] == "stratus"
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "Helm"
        expected = generated[meta["name"]]
        assert crd["spec"] == expected["spec"], meta["name"]
        assert {k: v for k, v in crd.items() if k != "metadata"} == {
            k: v for k, v in expected.items() if k != "metadata"
        }


def test_crds_keep_false_lets_uninstall_delete_them() -> None:
    rendered = of_kind(render("--set", "crds.keep=false"), "CustomResourceDefinition")
    assert len(rendered) == len(generated_crds())
    assert all(KEEP not in d["metadata"].get("annotations", {}) for d in rendered)


def test_crds_enabled_false_leaves_them_to_the_admin() -> None:
    docs = render("--set", "crds.enabled=false")
    assert not of_kind(docs, "CustomResourceDefinition")
    assert of_kind(docs, "Deployment")


def names(docs: list[Obj]) -> dict[str, str]:
    return {
        d["kind"]: d["metadata"]["name"]
        for d in docs
        if d["kind"] in ("Deployment", "ServiceAccount", "Service")
    }


def test_by_default_objects_are_named_stratus_operator() -> None:
    docs = render()
    assert names(docs) == {
        "Deployment": "stratus-operator",
        "ServiceAccount": "stratus-operator",
        "Service": "stratus-operator-metrics",
    }


def test_name_override_renames_the_label_and_the_objects() -> None:
    docs = render("--set", "nameOverride=trainer")
    assert names(docs) == {
        "Deployment": "trainer",
        "ServiceAccount": "trainer",
        "Service": "trainer-metrics",
    }
    dep = deployment(docs)
    assert dep["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] == "trainer"
    assert dep["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] == "trainer"
    (service,) = of_kind(docs, "Service")
    assert service["spec"]["selector"]["app.kubernetes.io/name"] == "trainer"


def test_fullname_override_renames_the_objects_and_every_reference_to_them() -> None:
    docs = render("--set", "fullnameOverride=ml-operator", "--set", "replicas=2")
    assert names(docs) == {
        "Deployment": "ml-operator",
        "ServiceAccount": "ml-operator",
        "Service": "ml-operator-metrics",
    }
    assert deployment(docs)["metadata"]["labels"]["app.kubernetes.io/name"] == "stratus-operator"
    assert deployment(docs)["spec"]["template"]["spec"]["serviceAccountName"] == "ml-operator"
    subjects = [s for d in of_kind(docs, "ClusterRoleBinding") for s in d["subjects"]]
    assert subjects
    assert {s["name"] for s in subjects} == {"ml-operator"}
    (pdb,) = of_kind(docs, "PodDisruptionBudget")
    assert pdb["metadata"]["name"] == "ml-operator"


@pytest.mark.parametrize("bad", ["Trainer", "a_b", "-x"])
def test_a_name_override_that_is_no_dns_label_is_refused(bad: str) -> None:
    with pytest.raises(RuntimeError, match="nameOverride"):
        render("--set", f"nameOverride={bad}")


def test_image_pull_secrets_reach_the_pod_and_are_absent_by_default() -> None:
    assert "imagePullSecrets" not in deployment(render())["spec"]["template"]["spec"]
    pod = deployment(render("--set-json", 'imagePullSecrets=[{"name":"regcred"}]'))["spec"][
        "template"
    ]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    with pytest.raises(RuntimeError, match="imagePullSecrets"):
        render("--set-json", 'imagePullSecrets=["regcred"]')


def test_pod_labels_and_annotations_without_touching_the_selector() -> None:
    dep = deployment(
        render(
            "--set-json",
            'podLabels={"team":"ml-platform","app.kubernetes.io/name":"hijack"}',
            "--set",
            "podAnnotations.example\\.com/owner=ml",
        )
    )
    template = dep["spec"]["template"]["metadata"]
    assert template["labels"]["team"] == "ml-platform"
    # The selector's labels win, so the Deployment still owns its pods.
    assert template["labels"]["app.kubernetes.io/name"] == "stratus-operator"
    assert dep["spec"]["selector"]["matchLabels"].items() <= template["labels"].items()
    assert template["annotations"] == {"example.com/owner": "ml"}
    assert "team" not in dep["metadata"]["labels"]


def test_pod_annotations_absent_by_default() -> None:
    assert "annotations" not in deployment(render())["spec"]["template"]["metadata"]


def images(docs: list[Obj]) -> tuple[str, str]:
    container = deployment(docs)["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    return container["image"], env["STRATUS_STAGING_IMAGE"]


def test_the_tag_defaults_to_the_app_version() -> None:
    version = yaml.safe_load((packaging.CHART / "Chart.yaml").read_text())["appVersion"]
    image = f"ghcr.io/stratus-dev/stratus-operator:{version}"
    assert images(render()) == (image, image)
    tagged = "ghcr.io/stratus-dev/stratus-operator:9.9.9"
    assert images(render("--set", "image.tag=9.9.9")) == (tagged, tagged)


def test_a_digest_wins_over_the_tag_for_the_operator_and_its_staging_image() -> None:
    pinned = f"ghcr.io/stratus-dev/stratus-operator@{DIGEST}"
    docs = render("--set", "image.tag=9.9.9", "--set", f"image.digest={DIGEST}")
    assert images(docs) == (pinned, pinned)


@pytest.mark.parametrize("bad", ["sha256:abc", "0123456789abcdef" * 4, "md5:" + "0" * 64])
def test_a_malformed_digest_is_refused(bad: str) -> None:
    with pytest.raises(RuntimeError, match="digest"):
        render("--set", f"image.digest={bad}")


def test_the_packaged_chart_lints_and_carries_its_crds(tmp_path: Path) -> None:
    assert "0 chart(s) failed" in packaging.helm("lint", str(packaging.CHART))
    packaging.helm("package", str(packaging.CHART), "--destination", str(tmp_path))
    (archive,) = tmp_path.glob("stratus-*.tgz")
    text = packaging.helm("template", "stratus", str(archive), "--namespace", "stratus-system")
    docs = [d for d in yaml.safe_load_all(text) if d]
    assert len(of_kind(docs, "CustomResourceDefinition")) == len(generated_crds())


def operator_env(docs: list[Obj]) -> dict[str, str]:
    (container,) = deployment(docs)["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value") for e in container["env"]}


def test_the_price_table_reaches_the_operator_as_json_and_parses(tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(
        "cost:\n"
        "  currency: EUR\n"
        "  prices:\n"
        "    default: {spot: 1.1, onDemand: 3.2}\n"
        "    NVIDIA-H100-80GB-HBM3: {spot: 3.9, onDemand: 9.8}\n"
        "costCenters: [cc-1]\n"
    )
    env = operator_env(render("-f", str(values)))
    assert env["STRATUS_CURRENCY"] == "EUR"
    assert env["STRATUS_COST_CENTERS"] == "cc-1"
    config = from_env({k: v for k, v in env.items() if v is not None})
    assert config.prices.currency == "EUR"
    assert config.prices.price("NVIDIA-H100-80GB-HBM3") == Price(3.9, 9.8)
    assert config.prices.price("NVIDIA-A10G") == Price(1.1, 3.2)


def test_without_prices_the_operator_gets_none_and_shows_gpu_hours_only() -> None:
    env = operator_env(render())
    assert "STRATUS_PRICES" not in env
    assert env["STRATUS_CURRENCY"] == "USD"
    assert from_env({k: v for k, v in env.items() if v is not None}).prices.prices == {}


@pytest.mark.parametrize(
    ("values", "says"),
    [
        ('{"a100": {"spot": 1, "onDemand": 2}}', "missing property 'default'"),
        ('{"default": {"spot": -1, "onDemand": 2}}', "minimum"),
        ('{"default": {"spot": 1}}', "missing property 'onDemand'"),
    ],
)
def test_a_bad_price_table_is_refused_at_install(values: str, says: str) -> None:
    with pytest.raises(RuntimeError, match=says):
        render("--set-json", f"cost.prices={values}")
    with pytest.raises(RuntimeError, match="pattern"):
        render("--set", "cost.currency=usd")
