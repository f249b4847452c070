"""KServe InferenceServices into Stratus InferenceServices: golden outputs for the corpus in
tests/convert_corpus/kserve, and the rules behind them one by one.

STRATUS_UPDATE_GOLDEN=1 rewrites the .expected.json files; review their diff before committing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from stratus.api.inferenceservice import InferenceServiceSpec
from stratus.convert.kserve import convert_inferenceservice
from stratus.convert.report import Conversion
from stratus.convert.serving_pod import CONVERTED_FROM, PLACEHOLDER_MODEL_URI
from tests.unit.convert.golden import assert_golden

CORPUS = Path(__file__).parents[2] / "convert_corpus" / "kserve"
FILES = sorted(CORPUS.glob("*.yaml"))
RUNTIME_KINDS = {"ServingRuntime", "ClusterServingRuntime"}


def _isvc(predictor: dict[str, Any], **annotations: str) -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "iris", "annotations": annotations},
        "spec": {"predictor": predictor},
    }


def _convert(doc: dict[str, Any]) -> Conversion:
    (conversion,) = convert_inferenceservice(doc, "isvc.yaml")
    return conversion


def _spec(doc: dict[str, Any]) -> dict[str, Any]:
    conversion = _convert(doc)
    assert conversion.error is None, conversion.error
    spec: dict[str, Any] = conversion.resources[0]["spec"]
    return spec


def _fields(conversion: Conversion) -> dict[str, str]:
    return {n.field: n.kind for n in conversion.notes}


SKLEARN = {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": "s3://models/iris/"}}


def test_the_corpus_is_there() -> None:
    assert len(FILES) >= 6


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_golden(path: Path) -> None:
    docs = list(yaml.safe_load_all(path.read_text()))
    runtimes = [d for d in docs if isinstance(d, dict) and d.get("kind") in RUNTIME_KINDS]
    got = [
        c.as_dict()
        for i, doc in enumerate(docs, 1)
        if doc not in runtimes
        for c in convert_inferenceservice(doc, f"{path.name}#{i}", runtimes=runtimes)
    ]
    assert_golden(got, path)
    for conversion in got:
        assert conversion["error"] or conversion["resources"]
        for resource in conversion["resources"]:
            InferenceServiceSpec.model_validate(resource["spec"])


def test_malformed_documents_each_fail_alone_in_one_line() -> None:
    docs = list(yaml.safe_load_all((CORPUS / "malformed.yaml").read_text()))
    results = [c for d in docs for c in convert_inferenceservice(d, "m.yaml")]
    assert len(results) == len(docs)
    errors = [c.error for c in results if c.error]
    assert len(errors) == len(docs) - 1
    assert all("\n" not in e for e in errors)
    assert results[-1].resources


def test_a_predefined_runtime_becomes_its_default_image_with_the_model_in_models() -> None:
    conversion = _convert(_isvc(SKLEARN))
    spec = conversion.resources[0]["spec"]
    assert spec["image"].startswith("kserve/sklearnserver:")
    assert spec["args"] == ["--model_name=iris", "--model_dir=/models", "--http_port=8080"]
    assert spec["readinessPath"] == "/v2/health/ready"
    assert _fields(conversion)["spec.predictor.model.modelFormat"] == "changed"


def test_a_runtime_image_override_is_kept() -> None:
    model = {**SKLEARN["model"], "image": "ghcr.io/me/sklearn:1"}
    spec = _spec(_isvc({"model": model}))
    assert spec["image"] == "ghcr.io/me/sklearn:1"
    assert "args" not in spec


def test_a_format_without_a_runtime_or_image_is_an_error() -> None:
    conversion = _convert(_isvc({"model": {"modelFormat": {"name": "caffe2"}}}))
    assert conversion.error is not None
    assert "caffe2" in conversion.error
    assert not conversion.resources


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("s3://models/iris/model.joblib", "s3://models/iris/model.joblib"),
        ("s3://models/iris", "s3://models/iris/"),
        ("gs://bucket/dir/", "gs://bucket/dir/"),
        ("pvc://claim/models/iris", "pvc://claim/models/iris"),
        ("https://example.com/m.onnx", "https://example.com/m.onnx"),
        ("hf://org/model", PLACEHOLDER_MODEL_URI),
        ("oci://registry/model:1", PLACEHOLDER_MODEL_URI),
        ("http://example.com/m.onnx", PLACEHOLDER_MODEL_URI),
        (None, PLACEHOLDER_MODEL_URI),
    ],
)
def test_storage_uri_schemes(uri: str | None, expected: str) -> None:
    model: dict[str, Any] = {"modelFormat": {"name": "sklearn"}}
    if uri is not None:
        model["storageUri"] = uri
    conversion = _convert(_isvc({"model": model}))
    assert conversion.resources[0]["spec"]["model"]["uri"] == expected
    if expected == PLACEHOLDER_MODEL_URI:
        assert _fields(conversion)["spec.predictor.model.storageUri"] == "action"


def test_a_custom_container_keeps_its_fields_and_storage_uri_becomes_the_model() -> None:
    container = {
        "name": "kserve-container",
        "image": "me/server:1",
        "args": ["--model-dir", "/mnt/models/iris"],
        "env": [
            {"name": "STORAGE_URI", "value": "s3://models/iris/m.bin"},
            {"name": "A", "value": 1},
        ],
        "ports": [{"containerPort": 9000}],
        "readinessProbe": {"httpGet": {"path": "/ready"}},
        "resources": {"limits": {"nvidia.com/gpu": 2, "cpu": "8", "memory": "32Gi"}},
    }
    spec = _spec(_isvc({"containers": [container]}))
    assert spec["image"] == "me/server:1"
    assert spec["args"] == ["--model-dir", "/models/iris"]
    assert spec["env"] == [{"name": "A", "value": "1"}]
    assert spec["model"] == {"uri": "s3://models/iris/m.bin"}
    assert (spec["port"], spec["readinessPath"]) == (9000, "/ready")
    assert spec["resources"] == {"gpu": 2, "cpu": "8", "memory": "32Gi"}


def test_no_gpu_request_means_no_gpu() -> None:
    assert _spec(_isvc(SKLEARN))["resources"] == {"gpu": 0}


def test_gpu_product_selector_becomes_gpu_type_and_the_rest_stays_a_selector() -> None:
    model = {**SKLEARN["model"], "resources": {"limits": {"nvidia.com/gpu": "1"}}}
    predictor = {
        "model": model,
        "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-L4", "pool": "gpu"},
    }
    spec = _spec(_isvc(predictor))
    assert spec["resources"] == {"gpu": 1, "gpuType": "NVIDIA-L4"}
    assert spec["podTemplate"]["spec"]["nodeSelector"] == {"pool": "gpu"}


def test_cpu_scaling_in_raw_deployment_mode() -> None:
    predictor = {**SKLEARN, "minReplicas": 2, "maxReplicas": 6, "scaleMetric": "cpu"}
    spec = _spec(_isvc(predictor, **{"serving.kserve.io/deploymentMode": "RawDeployment"}))
    assert spec["replicas"] == {"min": 2, "max": 6}
    assert spec["autoscaling"] == {"metric": "cpu", "target": 80}


def test_concurrency_scaling_is_noted_not_guessed() -> None:
    predictor = {**SKLEARN, "minReplicas": 0, "maxReplicas": 4, "scaleMetric": "rps"}
    conversion = _convert(_isvc(predictor))
    spec = conversion.resources[0]["spec"]
    assert spec["replicas"] == {"min": 1, "max": 4}
    assert "autoscaling" not in spec
    notes = _fields(conversion)
    assert notes["spec.predictor.scaleMetric"] == "dropped"
    assert notes["spec.predictor.minReplicas"] == "changed"


def test_knative_annotations_give_the_bounds() -> None:
    annotations = {
        "autoscaling.knative.dev/minScale": "2",
        "autoscaling.knative.dev/maxScale": "3",
        "keep.me/too": "yes",
    }
    conversion = _convert(_isvc(SKLEARN, **annotations))
    resource = conversion.resources[0]
    assert resource["spec"]["replicas"] == {"min": 2, "max": 3}
    assert resource["metadata"]["annotations"] == {
        "keep.me/too": "yes",
        CONVERTED_FROM: "InferenceService/iris",
    }


@pytest.mark.parametrize(
    ("percent", "steps"),
    [
        (25, [{"weight": 25, "pause": {}}, {"weight": 100}]),
        (100, None),
        (0, None),
    ],
)
def test_canary_traffic_percent(percent: int, steps: list[dict[str, Any]] | None) -> None:
    spec = _spec(_isvc({**SKLEARN, "canaryTrafficPercent": percent}))
    assert spec.get("rollout", {}).get("steps") == steps


def test_transformer_explainer_and_sidecars_are_noted() -> None:
    doc = _isvc({"containers": [{"image": "a:1"}, {"image": "sidecar:1"}]})
    doc["spec"]["transformer"] = {"containers": [{"image": "t:1"}]}
    doc["spec"]["explainer"] = {"alibi": {}}
    notes = _fields(_convert(doc))
    assert notes["spec.transformer"] == "dropped"
    assert notes["spec.explainer"] == "dropped"
    assert notes["spec.predictor.containers[1]"] == "dropped"


def test_an_unsafe_name_is_renamed_and_said_so() -> None:
    doc = _isvc(SKLEARN)
    doc["metadata"]["name"] = "9Iris_Model.v2"
    conversion = _convert(doc)
    assert conversion.resources[0]["metadata"]["name"] == "svc-9iris-model-v2"
    assert _fields(conversion)["metadata.name"] == "changed"


def test_not_a_mapping_is_an_error() -> None:
    (conversion,) = convert_inferenceservice("predictor: nope", "isvc.yaml")
    assert conversion.error == "not a Kubernetes object"


def test_model_format_names_are_read_regardless_of_case() -> None:
    model = {"modelFormat": {"name": "XGBoost"}, "storageUri": "s3://models/xgb/model.bst"}
    assert _spec(_isvc({"model": model}))["image"].startswith("kserve/xgbserver:")


def test_a_serving_runtime_in_the_input_gives_the_server() -> None:
    runtime = {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "ClusterServingRuntime",
        "metadata": {"name": "mine"},
        "spec": {
            "supportedModelFormats": [{"name": "custom"}],
            "containers": [
                {
                    "name": "kserve-container",
                    "image": "me/runtime:2",
                    "args": ["--name={{.Name}}", "--dir=/mnt/models"],
                    "env": [{"name": "A", "value": "runtime"}, {"name": "B", "value": "b"}],
                    "resources": {"limits": {"cpu": "2"}},
                }
            ],
        },
    }
    model = {
        "modelFormat": {"name": "custom"},
        "runtime": "mine",
        "storageUri": "s3://models/m/",
        "args": ["--extra"],
        "env": [{"name": "A", "value": "isvc"}],
    }
    (conversion,) = convert_inferenceservice(_isvc({"model": model}), "x", runtimes=[runtime])
    assert conversion.error is None, conversion.error
    spec = conversion.resources[0]["spec"]
    assert spec["image"] == "me/runtime:2"
    assert spec["args"] == ["--name=iris", "--dir=/models", "--extra"]
    assert spec["env"] == [{"name": "A", "value": "isvc"}, {"name": "B", "value": "b"}]
    assert spec["resources"] == {"gpu": 0, "cpu": "2"}


def test_a_runtime_only_in_the_cluster_is_an_error_naming_it() -> None:
    model = {"modelFormat": {"name": "custom"}, "runtime": "elsewhere"}
    conversion = _convert(_isvc({"model": model}))
    assert conversion.error is not None
    assert "'elsewhere'" in conversion.error


def test_the_kfserving_v1alpha2_shape_is_an_error() -> None:
    doc = _isvc({})
    doc["apiVersion"] = "serving.kubeflow.org/v1alpha2"
    doc["spec"] = {"default": {"predictor": {"custom": {"container": {"image": "a:1"}}}}}
    conversion = _convert(doc)
    assert conversion.kind == "serving.kubeflow.org/v1alpha2 InferenceService"
    assert conversion.error is not None
    assert conversion.error.startswith("spec.default:")
