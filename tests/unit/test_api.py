"""The models: the examples pass, mistakes are refused naming the field, the CRDs are current
and structural."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from stratus.api import crd, resources
from stratus.api.trainingjob import TrainingJobSpec
from tests.cases import INVALID, Invalid, all_examples

REPO_CRDS = Path(__file__).resolve().parents[2] / "crds"


@pytest.mark.parametrize("obj", all_examples(), ids=lambda o: o["metadata"]["name"])
def test_examples_are_valid(obj: dict[str, Any]) -> None:
    resources.validate(obj)


def test_there_are_examples_of_each_kind() -> None:
    kinds = [o["kind"] for o in all_examples()]
    assert kinds.count("TrainingJob") >= 2
    assert kinds.count("InferenceService") >= 1


@pytest.mark.parametrize("case", INVALID, ids=lambda c: c.id)
def test_invalid_specs_are_refused_naming_the_field(case: Invalid) -> None:
    with pytest.raises(resources.InvalidResourceError) as refused:
        resources.validate(case.build())
    assert case.field in str(refused.value)


def test_defaults_are_what_a_user_expects() -> None:
    spec = TrainingJobSpec.model_validate({"image": "train:1"})
    assert spec.workers == 1
    assert spec.resources.gpu == 1
    assert spec.spot.enabled is False
    assert spec.retry.max_restarts == 3
    assert spec.termination_grace_period_seconds == 120
    assert spec.checkpoint is None


@pytest.mark.parametrize("rtype", resources.RESOURCE_TYPES, ids=lambda r: r.kind)
def test_checked_in_crds_match_the_models(rtype: resources.ResourceType) -> None:
    checked_in = (REPO_CRDS / crd.file_name(rtype)).read_text()
    assert checked_in == crd.render(rtype), "crds/ is stale: run `make crds`"


def _walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = []
    if isinstance(node, dict):
        found.append((path, node))
        for key, child in node.get("properties", {}).items():
            found += _walk(child, f"{path}.{key}")
        if "items" in node:
            found += _walk(node["items"], f"{path}[]")
        if isinstance(node.get("additionalProperties"), dict):
            found += _walk(node["additionalProperties"], f"{path}{{}}")
    return found


@pytest.mark.parametrize("rtype", resources.RESOURCE_TYPES, ids=lambda r: r.kind)
def test_schemas_are_structural_and_described(rtype: resources.ResourceType) -> None:
    schema = crd.openapi_schema(rtype)
    for path, node in _walk(schema["properties"]["spec"], "spec"):
        assert not {"$ref", "anyOf", "oneOf", "allOf", "title"} & node.keys(), path
        if not path.endswith(("[]", "{}")):
            assert node.get("description"), f"{path} has no description (kubectl explain)"
        assert "type" in node or node.get("x-kubernetes-int-or-string"), path
        assert node.get("default", "unset") is not None, path


def test_rules_in_crd_match_the_models_rules() -> None:
    text = (REPO_CRDS / "inferenceservices.stratus.dev.yaml").read_text()
    from stratus.api.inferenceservice import Rollout  # noqa: PLC0415

    for rule in Rollout.rules:
        assert rule.message in text


def test_the_runnable_training_example_is_valid() -> None:
    path = Path(__file__).resolve().parents[2] / "examples" / "train" / "trainingjob.yaml"
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d["kind"] == "TrainingJob"]
    assert len(docs) == 1
    resources.validate(docs[0])


def test_the_charts_crds_are_the_same_generated_files() -> None:
    chart = REPO_CRDS.parent / "charts" / "stratus" / "crds"
    names = sorted(p.name for p in REPO_CRDS.glob("*.yaml"))
    assert names == sorted(p.name for p in chart.glob("*.yaml"))
    for name in names:
        assert (chart / name).read_text() == (REPO_CRDS / name).read_text(), name
    assert (REPO_CRDS / crd.PEERING_FILE).read_text() == crd.render_peering()
