"""The Deployment a revision runs: what the server is told, and a private CA that reaches the
model download, and only the download."""

from __future__ import annotations

from typing import Any

from stratus.api.inferenceservice import InferenceServiceSpec
from stratus.podspec import Owner
from stratus.serving import builders

OWNER = Owner("InferenceService", "web", "ns", "uid")
URI = "https://10.244.1.1:8443/model.json"


def pod_spec(**model: Any) -> dict[str, Any]:
    spec = InferenceServiceSpec.model_validate({"image": "serve:1", "model": {"uri": URI, **model}})
    built: dict[str, Any] = builders.build_deployment(OWNER, spec, "abc", 1, "stage:1")
    return dict(built["spec"]["template"]["spec"])


def test_a_ca_config_map_is_mounted_into_the_staging_container_only() -> None:
    pod = pod_spec(caConfigMap="model-ca")
    (init,) = pod["initContainers"]
    assert init["command"][-2:] == ["--ca-file", "/etc/stratus/model-ca/ca.crt"]
    assert {
        "name": "stratus-model-ca",
        "mountPath": "/etc/stratus/model-ca",
        "readOnly": True,
    } in init["volumeMounts"]
    assert {
        "name": "stratus-model-ca",
        "configMap": {"name": "model-ca", "items": [{"key": "ca.crt", "path": "ca.crt"}]},
    } in pod["volumes"]
    (server,) = pod["containers"]
    assert [m["name"] for m in server["volumeMounts"]] == ["stratus-model"]


def test_without_a_ca_config_map_staging_trusts_the_image_defaults() -> None:
    pod = pod_spec(sha256="a" * 64)
    (init,) = pod["initContainers"]
    assert "--ca-file" not in init["command"]
    assert init["command"][-2:] == ["--sha256", "a" * 64]
    assert [v["name"] for v in pod["volumes"]] == ["stratus-model"]
    assert [m["name"] for m in init["volumeMounts"]] == ["stratus-model"]


def test_the_server_is_told_its_revision() -> None:
    (server,) = pod_spec()["containers"]
    assert {"name": "STRATUS_REVISION", "value": "abc"} in server["env"]


def test_team_and_cost_center_label_the_deployment_its_pods_and_the_autoscaler() -> None:
    spec = InferenceServiceSpec.model_validate(
        {
            "image": "serve:1",
            "model": {"uri": URI, "sha256": "a" * 64},
            "team": "vision",
            "costCenter": "cc-42",
            "autoscaling": {"metric": "cpu", "target": "70"},
        }
    )
    want = {"stratus.dev/team": "vision", "stratus.dev/cost-center": "cc-42"}
    deployment = builders.build_deployment(OWNER, spec, "abc", 1, "stage:1")
    hpa = builders.build_hpa(OWNER, spec, "abc")
    assert hpa is not None
    for labels in (
        deployment["metadata"]["labels"],
        deployment["spec"]["template"]["metadata"]["labels"],
        hpa["metadata"]["labels"],
    ):
        assert want.items() <= labels.items()
    # The selector stays what it was: a Deployment's selector cannot change.
    assert deployment["spec"]["selector"]["matchLabels"] == {
        "stratus.dev/inferenceservice": "web",
        "stratus.dev/revision": "abc",
    }


def test_a_server_scaled_away_keeps_serving_until_its_endpoint_is_gone() -> None:
    (server,) = pod_spec()["containers"]
    assert server["lifecycle"] == {"preStop": {"sleep": {"seconds": builders.DRAIN_SECONDS}}}
    # The kubelet's default 30 s grace covers the drain and a server's own shutdown.
    assert builders.DRAIN_SECONDS < 30


def test_a_tenants_own_pre_stop_hook_wins() -> None:
    hook = {"preStop": {"exec": {"command": ["/bin/drain"]}}}
    spec = InferenceServiceSpec.model_validate(
        {
            "image": "serve:1",
            "model": {"uri": URI},
            "podTemplate": {"spec": {"containers": [{"name": "server", "lifecycle": hook}]}},
        }
    )
    built = builders.build_deployment(OWNER, spec, "abc", 1, "stage:1")
    (server,) = built["spec"]["template"]["spec"]["containers"]
    assert server["lifecycle"] == hook
