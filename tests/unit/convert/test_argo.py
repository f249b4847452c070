"""Argo Rollouts Rollouts (with the AnalysisTemplates they name) into Stratus InferenceServices:
golden outputs for the corpus in tests/convert_corpus/argo, and the rules behind them one by one.

STRATUS_UPDATE_GOLDEN=1 rewrites the .expected.json files; review their diff before committing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from stratus.api.inferenceservice import InferenceServiceSpec
from stratus.convert.argo import convert_rollout
from stratus.convert.report import Conversion
from stratus.convert.serving_pod import PLACEHOLDER_MODEL_URI
from tests.unit.convert.golden import assert_golden

CORPUS = Path(__file__).parents[2] / "convert_corpus" / "argo"
FILES = sorted(CORPUS.glob("*.yaml"))
TEMPLATE_KINDS = {"AnalysisTemplate", "ClusterAnalysisTemplate"}


def _rollout(canary: dict[str, Any] | None = None, **container: Any) -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "web"},
        "spec": {
            "template": {"spec": {"containers": [{"name": "web", "image": "web:1", **container}]}},
            "strategy": {"canary": canary or {}},
        },
    }


def _template(*metrics: dict[str, Any], args: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": {"name": "checks"},
        "spec": {"args": args or [], "metrics": list(metrics)},
    }


def _metric(query: str = "up", **conditions: Any) -> dict[str, Any]:
    return {"name": "m", "provider": {"prometheus": {"query": query}}, **conditions}


def _convert(doc: dict[str, Any], *templates: dict[str, Any]) -> Conversion:
    (conversion,) = convert_rollout(doc, "rollout.yaml", templates=list(templates))
    return conversion


def _spec(doc: dict[str, Any], *templates: dict[str, Any]) -> dict[str, Any]:
    conversion = _convert(doc, *templates)
    assert conversion.error is None, conversion.error
    spec: dict[str, Any] = conversion.resources[0]["spec"]
    return spec


def _fields(conversion: Conversion) -> dict[str, str]:
    return {n.field: n.kind for n in conversion.notes}


def _analysis(*metrics: dict[str, Any], args: list[dict[str, Any]] | None = None) -> Conversion:
    canary = {
        "steps": [{"setWeight": 50}],
        "analysis": {"templates": [{"templateName": "checks"}], "args": args or []},
    }
    return _convert(_rollout(canary), _template(*metrics, args=[{"name": "svc"}]))


def test_the_corpus_is_there() -> None:
    assert len(FILES) >= 4


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_golden(path: Path) -> None:
    docs = list(yaml.safe_load_all(path.read_text()))
    templates = [d for d in docs if isinstance(d, dict) and d.get("kind") in TEMPLATE_KINDS]
    got = [
        c.as_dict()
        for i, doc in enumerate(docs, 1)
        if doc not in templates
        for c in convert_rollout(doc, f"{path.name}#{i}", templates=templates)
    ]
    assert_golden(got, path)
    for conversion in got:
        assert conversion["error"] or conversion["resources"]
        for resource in conversion["resources"]:
            InferenceServiceSpec.model_validate(resource["spec"])


def test_malformed_rollouts_each_fail_alone_in_one_line() -> None:
    docs = [
        d
        for d in yaml.safe_load_all((CORPUS / "malformed.yaml").read_text())
        if d["kind"] == "Rollout"
    ]
    results = [c for d in docs for c in convert_rollout(d, "m.yaml", templates=[])]
    assert len(results) == len(docs)
    assert sum(1 for c in results if c.error) == len(docs) - 1
    assert all("\n" not in (c.error or "") for c in results)
    assert results[-1].resources


def test_weights_and_pauses_become_steps_ending_at_100() -> None:
    canary = {
        "steps": [
            {"setWeight": 10},
            {"pause": {"duration": 60}},
            {"setWeight": 40},
            {"pause": {}},
            {"setWeight": 70},
        ]
    }
    assert _spec(_rollout(canary))["rollout"]["steps"] == [
        {"weight": 10, "pause": {"duration": "60s"}},
        {"weight": 40, "pause": {}},
        {"weight": 70},
        {"weight": 100},
    ]


def test_falling_weights_and_early_pauses_are_dropped_with_a_note() -> None:
    canary = {"steps": [{"pause": {}}, {"setWeight": 60}, {"setWeight": 20}]}
    conversion = _convert(_rollout(canary))
    assert conversion.resources[0]["spec"]["rollout"]["steps"] == [
        {"weight": 60},
        {"weight": 100},
    ]
    notes = _fields(conversion)
    assert notes["spec.strategy.canary.steps[0].pause"] == "dropped"
    assert notes["spec.strategy.canary.steps[2].setWeight"] == "dropped"


def test_the_pod_template_gives_the_server_and_the_model_is_a_placeholder() -> None:
    conversion = _convert(
        _rollout(
            ports=[{"containerPort": 3000}],
            readinessProbe={"httpGet": {"path": "/ready", "port": 3000}},
            resources={"limits": {"nvidia.com/gpu": 1, "memory": "8Gi"}},
        )
    )
    spec = conversion.resources[0]["spec"]
    assert (spec["image"], spec["port"], spec["readinessPath"]) == ("web:1", 3000, "/ready")
    assert spec["resources"] == {"gpu": 1, "memory": "8Gi"}
    assert spec["model"] == {"uri": PLACEHOLDER_MODEL_URI}
    assert _fields(conversion)["spec.template"] == "action"


@pytest.mark.parametrize(
    ("conditions", "bounds"),
    [
        ({"successCondition": "result[0] >= 0.95"}, {"min": 0.95}),
        ({"successCondition": "result[0] <= 500"}, {"max": 500.0}),
        ({"successCondition": "0.9 <= result[0]"}, {"min": 0.9}),
        ({"successCondition": "result >= 1 && result <= 3"}, {"min": 1.0, "max": 3.0}),
        ({"successCondition": "asFloat(result[0]) > 0"}, {"min": 0.0}),
        ({"failureCondition": "result[0] > 0.01"}, {"max": 0.01}),
        ({"failureCondition": "result[0] < 10 || result[0] > 20"}, {"min": 10.0, "max": 20.0}),
        ({"failureCondition": "len(result) == 0 || result[0] >= 5"}, {"max": 5.0}),
        (
            {"successCondition": "result[0] >= 0.5", "failureCondition": "result[0] > 0.9"},
            {"min": 0.5, "max": 0.9},
        ),
        ({"successCondition": "isNaN(result[0]) || (result[0] < 1e3)"}, {"max": 1000.0}),
    ],
)
def test_conditions_become_bounds(conditions: dict[str, str], bounds: dict[str, float]) -> None:
    conversion = _analysis(_metric(**conditions))
    (metric,) = conversion.resources[0]["spec"]["rollout"]["analysis"]["metrics"]
    assert {k: v for k, v in metric.items() if k in {"min", "max"}} == bounds


@pytest.mark.parametrize(
    "conditions",
    [
        {},
        {"successCondition": "result[0] == 1"},
        {"successCondition": "result[0] > 1 || result[0] < 0"},
        {"successCondition": "result[0] >= 5 && result[0] <= 1"},
        {"successCondition": "result.ok"},
    ],
)
def test_unreadable_conditions_drop_the_metric_with_a_note(conditions: dict[str, str]) -> None:
    conversion = _analysis(_metric(**conditions))
    assert "analysis" not in conversion.resources[0]["spec"]["rollout"]
    assert _fields(conversion)["AnalysisTemplate checks: spec.metrics[0]"] == "dropped"


def test_arguments_become_stratus_placeholders_or_literals() -> None:
    query = 'x{a="{{args.svc}}",h="{{ args.hash }}",s="{{args.stable}}",n="{{args.ns}}"}'
    args: list[dict[str, Any]] = [
        {"name": "svc", "value": "web"},
        {"name": "hash", "valueFrom": {"podTemplateHashValue": "Latest"}},
        {"name": "stable", "valueFrom": {"podTemplateHashValue": "Stable"}},
        {"name": "ns", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
    ]
    conversion = _analysis(_metric(query, successCondition="result[0] < 1"), args=args)
    (metric,) = conversion.resources[0]["spec"]["rollout"]["analysis"]["metrics"]
    assert metric["query"] == 'x{a="web",h="{{canary}}",s="{{stable}}",n="{{namespace}}"}'


def test_an_argument_without_a_value_drops_the_metric() -> None:
    conversion = _analysis(_metric('x{a="{{args.svc}}"}', successCondition="result[0] < 1"))
    assert "analysis" not in conversion.resources[0]["spec"]["rollout"]


def test_the_prometheus_address_is_left_unset_and_noted() -> None:
    metric = _metric(successCondition="result[0] < 1")
    metric["provider"]["prometheus"]["address"] = "http://prom.monitoring:9090"
    metric["interval"] = "30s"
    metric["failureLimit"] = 2
    conversion = _analysis(metric)
    analysis = conversion.resources[0]["spec"]["rollout"]["analysis"]
    assert "prometheusAddress" not in analysis
    assert (analysis["interval"], analysis["failureLimit"]) == ("30s", 2)
    note = next(n for n in conversion.notes if n.field.endswith("prometheus.address"))
    assert note.kind == "action"
    assert "http://prom.monitoring:9090" in note.reason


def test_a_template_not_in_the_input_is_noted() -> None:
    canary = {"steps": [{"analysis": {"templates": [{"templateName": "gone"}]}}]}
    conversion = _convert(_rollout(canary))
    assert _fields(conversion)["spec.strategy.canary.steps[0].analysis.templates[0]"] == "dropped"


def test_gateway_api_plugin_becomes_the_http_route() -> None:
    routing = {"plugins": {"argoproj-labs/gatewayAPI": {"httpRoute": "web-route"}}}
    spec = _spec(_rollout({"steps": [{"setWeight": 10}], "trafficRouting": routing}))
    assert spec["rollout"]["trafficRouting"] == {"httpRoute": {"name": "web-route"}}


def test_blue_green_is_a_canary_without_steps_and_noted() -> None:
    doc = _rollout()
    doc["spec"]["strategy"] = {"blueGreen": {"activeService": "web"}}
    conversion = _convert(doc)
    assert conversion.resources[0]["spec"]["rollout"] == {}
    assert _fields(conversion)["spec.strategy.blueGreen"] == "changed"


def test_workload_ref_is_an_error_naming_the_deployment() -> None:
    doc = _rollout()
    del doc["spec"]["template"]
    doc["spec"]["workloadRef"] = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}
    conversion = _convert(doc)
    assert conversion.error is not None
    assert "Deployment 'web'" in conversion.error
