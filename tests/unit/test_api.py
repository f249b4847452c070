"""The models: the examples pass, mistakes are refused naming the field, the CRDs are current
and structural."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from stratus.api import budget, crd, inferenceservice, resources, trainingjob
from stratus.api.common import ApiModel, duration_seconds
from stratus.api.trainingjob import TrainingJobSpec
from tests.cases import INFS, INVALID, TJ, Invalid, all_examples, example, with_change

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
    assert (spec.retry.max_retryable_restarts, spec.retry.backoff_seconds) == (10, 10)
    assert spec.retry.max_backoff_seconds == 300
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


def _validations(node: Any) -> list[dict[str, Any]]:
    found = []
    if isinstance(node, dict):
        found += node.get("x-kubernetes-validations", [])
        for child in node.values():
            found += _validations(child)
    elif isinstance(node, list):
        for child in node:
            found += _validations(child)
    return found


@pytest.mark.parametrize("rtype", resources.RESOURCE_TYPES, ids=lambda r: r.kind)
def test_rules_in_crd_match_the_models_rules(rtype: resources.ResourceType) -> None:
    module = {"InferenceService": inferenceservice, "TrainingJob": trainingjob, "Budget": budget}[
        rtype.kind
    ]
    models = [m for m in vars(module).values() if isinstance(m, type) and issubclass(m, ApiModel)]
    in_crd = _validations(yaml.safe_load((REPO_CRDS / crd.file_name(rtype)).read_text()))
    for model in models:
        for rule in model.rules:
            assert rule.crd() in in_crd, f"{model.__name__}: {rule.message}"


# A Budget names no Service, so any object name will do.
NAMED_SERVICES = [r for r in resources.RESOURCE_TYPES if r is not resources.BUDGET]


@pytest.mark.parametrize("rtype", NAMED_SERVICES, ids=lambda r: r.kind)
def test_the_name_is_checked_at_the_root_of_the_schema(rtype: resources.ResourceType) -> None:
    root = crd.openapi_schema(rtype)["x-kubernetes-validations"]
    assert [entry["fieldPath"] for entry in root] == [".metadata.name"]
    assert "self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')" in root[0]["rule"]


VALID_CHANGES = [
    (INFS, "metadata.name", "web-v2"),
    (INFS, "metadata.name", "a1"),
    (TJ, "metadata.name", "train-2"),
    (INFS, "spec.autoscaling", {"metric": "cpu", "target": 1}),
    (INFS, "spec.autoscaling", {"metric": "memory", "target": 100}),
    (INFS, "spec.autoscaling", {"metric": "cpu", "target": "70"}),
    (INFS, "spec.autoscaling", {"metric": "prometheus", "query": "up", "target": 10}),
    (INFS, "spec.autoscaling", {"metric": "prometheus", "query": "up", "target": "0.5"}),
    (INFS, "spec.autoscaling", {"metric": "prometheus", "query": "up", "target": 1000}),
    (INFS, "spec.rollout.analysis.interval", "1s"),
    (INFS, "spec.rollout.analysis.interval", "1000ms"),
    (INFS, "spec.rollout.analysis.interval", "0.5s0.5s"),
    (INFS, "spec.rollout.steps", [{"weight": 50, "pause": {"duration": "0s"}}, {"weight": 100}]),
    (INFS, "spec.replicas", {"min": 1, "max": 1}),
]


@pytest.mark.parametrize(("base", "path", "value"), VALID_CHANGES, ids=str)
def test_values_at_the_edges_of_the_rules_are_accepted(base: str, path: str, value: Any) -> None:
    resources.validate(with_change(example(base), path, value))


def test_scale_to_zero_is_refused_with_a_clear_message() -> None:
    obj = with_change(example(INFS), "spec.replicas.min", 0)
    with pytest.raises(resources.InvalidResourceError) as refused:
        resources.validate(obj)
    assert str(refused.value) == (
        "spec.replicas.min: min 0 (scale to zero) is not supported yet; use min >= 1"
    )


def test_a_bad_name_is_refused_before_the_spec_is_read() -> None:
    obj = with_change(with_change(example(INFS), "metadata.name", "1web"), "spec.port", 0)
    with pytest.raises(resources.InvalidResourceError) as refused:
        resources.validate(obj)
    assert str(refused.value).startswith("metadata.name: must be a DNS-1035 label")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1h30m", 5400.0),
        ("500ms", 0.5),
        ("0.3s0.7s", 1.0),
        ("1h1h", 7200.0),
        ("2562047h", 2562047 * 3600.0),
        # Past what Go (and so CEL's duration()) can hold, about 292 years.
        ("2562048h", None),
    ],
)
def test_durations_read_as_go_reads_them(text: str, seconds: float | None) -> None:
    assert duration_seconds(text) == seconds


def test_the_runnable_training_example_is_valid() -> None:
    path = Path(__file__).resolve().parents[2] / "examples" / "train" / "trainingjob.yaml"
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d["kind"] == "TrainingJob"]
    assert len(docs) == 1
    resources.validate(docs[0])


def test_the_charts_crds_are_the_same_generated_files() -> None:
    # Not the chart's crds/ folder, which helm upgrade never updates: templates/crds.yaml reads
    # these, and a crds/ folder beside it would make helm install the CRDs twice.
    assert not (REPO_CRDS.parent / "charts" / "stratus" / "crds").exists()
    chart = REPO_CRDS.parent / "charts" / "stratus" / "files" / "crds"
    names = sorted(p.name for p in REPO_CRDS.glob("*.yaml"))
    assert names == sorted(p.name for p in chart.glob("*.yaml"))
    for name in names:
        assert (chart / name).read_text() == (REPO_CRDS / name).read_text(), name
    assert (REPO_CRDS / crd.PEERING_FILE).read_text() == crd.render_peering()
