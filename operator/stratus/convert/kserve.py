"""KServe InferenceService (serving.kserve.io/v1beta1) to a Stratus InferenceService: the
predictor's container (a custom one, or the image KServe's predefined runtime for the model
format uses), its model's storageUri, replicas and scaling, and canaryTrafficPercent as a canary
step held for `stratus promote`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from stratus.convert.report import Conversion, Manifest, whole
from stratus.convert.serving_pod import (
    MODEL_DIR,
    PLACEHOLDER_MODEL_URI,
    assemble,
    container_fields,
    finish,
    guarded,
    mapping,
    metadata,
    pod_fields,
    required_mapping,
    text,
)

KIND = "serving.kserve.io/v1beta1 InferenceService"


@dataclass(frozen=True)
class Runtime:
    """What KServe's predefined ServingRuntime for a model format runs, with KServe's
    {{.Name}} as NAME and its model directory as Stratus's."""

    runtime: str
    image: str
    args: tuple[str, ...] = ()
    command: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    readiness: str = "/v2/health/ready"
    port: int = 8080


NAME = "{name}"
_PYTHON_ARGS = (f"--model_name={NAME}", f"--model_dir={MODEL_DIR}", "--http_port=8080")
_TRITON = Runtime(
    "kserve-tritonserver",
    "nvcr.io/nvidia/tritonserver:23.05-py3",
    args=(f"--model-store={MODEL_DIR}", "--http-port=8080", "--grpc-port=9000"),
    command=("tritonserver",),
)
# The images and arguments of KServe v0.14's predefined ServingRuntimes (config/runtimes).
RUNTIMES: dict[str, Runtime] = {
    "sklearn": Runtime("kserve-sklearnserver", "kserve/sklearnserver:v0.14.1", _PYTHON_ARGS),
    "xgboost": Runtime("kserve-xgbserver", "kserve/xgbserver:v0.14.1", _PYTHON_ARGS),
    "lightgbm": Runtime("kserve-lgbserver", "kserve/lgbserver:v0.14.1", _PYTHON_ARGS),
    "pmml": Runtime("kserve-pmmlserver", "kserve/pmmlserver:v0.14.1", _PYTHON_ARGS),
    "paddle": Runtime("kserve-paddleserver", "kserve/paddleserver:v0.14.1", _PYTHON_ARGS),
    "huggingface": Runtime(
        "kserve-huggingfaceserver", "kserve/huggingfaceserver:v0.14.1", _PYTHON_ARGS
    ),
    "tensorflow": Runtime(
        "kserve-tensorflow-serving",
        "tensorflow/serving:2.6.2",
        args=(
            f"--model_name={NAME}",
            "--port=9000",
            "--rest_api_port=8080",
            f"--model_base_path={MODEL_DIR}",
        ),
        command=("/usr/bin/tensorflow_model_server",),
        readiness=f"/v1/models/{NAME}",
    ),
    "pytorch": Runtime(
        "kserve-torchserve",
        "pytorch/torchserve-kfs:0.9.0",
        args=(
            "torchserve",
            "--start",
            f"--model-store={MODEL_DIR}/model-store",
            f"--ts-config={MODEL_DIR}/config/config.properties",
        ),
        readiness=f"/v1/models/{NAME}",
    ),
    # Not a KServe default runtime, but the format's usual server: vLLM's own OpenAI image.
    "vllm": Runtime(
        "vllm",
        "vllm/vllm-openai:v0.6.3",
        args=(f"--model={MODEL_DIR}", "--port=8080", f"--served-model-name={NAME}"),
        readiness="/health",
    ),
    "triton": _TRITON,
    "onnx": _TRITON,
    "tensorrt": _TRITON,
    "mlflow": Runtime(
        "kserve-mlserver",
        "docker.io/seldonio/mlserver:1.5.0",
        env=(
            ("MLSERVER_MODEL_IMPLEMENTATION", "mlserver_mlflow.MLflowRuntime"),
            ("MLSERVER_MODEL_URI", MODEL_DIR),
            ("MLSERVER_MODEL_NAME", NAME),
            ("MLSERVER_HTTP_PORT", "8080"),
        ),
    ),
}
# ServingRuntime fields that only say which models it takes: nothing to carry.
_RUNTIME_SELECTION = {
    "supportedModelFormats",
    "protocolVersions",
    "multiModel",
    "disabled",
    "builtInAdapter",
    "grpcEndpoint",
    "grpcDataEndpoint",
    "httpDataEndpoint",
    "storageHelper",
}
# The pre-0.7 spelling: the format is the predictor's key.
LEGACY_FORMATS = {
    "sklearn",
    "xgboost",
    "lightgbm",
    "pmml",
    "paddle",
    "huggingface",
    "tensorflow",
    "pytorch",
    "triton",
    "onnx",
}
# ComponentExtensionSpec fields read below, and a PodSpec's containers.
_COMPONENT = {
    "minReplicas",
    "maxReplicas",
    "scaleMetric",
    "scaleMetricType",
    "scaleTarget",
    "canaryTrafficPercent",
    "autoScaling",
    "containers",
    "model",
    "labels",
    "annotations",
}
# Container fields a predictor implementation (model, sklearn, ...) adds to a container's.
_IMPLEMENTATION = {"modelFormat", "runtime", "storageUri", "protocolVersion", "runtimeVersion"}
# Predictor settings with no Stratus counterpart, and why.
_KNATIVE_ONLY = {
    "containerConcurrency": "Knative's per-replica request limit",
    "timeout": "Knative's request timeout",
}
_SIDE_FEATURES = {
    "logger": "KServe's request logger",
    "batcher": "KServe's request batcher",
    "deploymentStrategy": "the Deployment's own rollout strategy (Stratus rolls out by rollout)",
    "workerSpec": "multi-node serving (Stratus serves from one pod per replica)",
}
DEPLOYMENT_MODE = "serving.kserve.io/deploymentMode"
_MODES = {
    "Serverless": "Knative: scale to zero, request-based scaling",
    "ModelMesh": "many models packed into shared ModelMesh pods",
}
KNATIVE_MIN = "autoscaling.knative.dev/minScale"
KNATIVE_MAX = "autoscaling.knative.dev/maxScale"
KNATIVE_METRIC = "autoscaling.knative.dev/metric"
KNATIVE_TARGET = "autoscaling.knative.dev/target"
AUTOSCALER_CLASS = "serving.kserve.io/autoscalerClass"
READ_ANNOTATIONS = {DEPLOYMENT_MODE, KNATIVE_MIN, KNATIVE_MAX, KNATIVE_METRIC, KNATIVE_TARGET}
_FILE = re.compile(r"/[^/]+\.[A-Za-z0-9]+$")
_ARCHIVE = (".zip", ".tar", ".tar.gz", ".tgz")


def convert_inferenceservice(
    doc: dict[str, Any] | str, source: str, runtimes: list[dict[str, Any]] | None = None
) -> list[Conversion]:
    """One KServe InferenceService as one Stratus InferenceService; never raises for a bad one.

    `runtimes` are every ServingRuntime and ClusterServingRuntime (serving.kserve.io/v1alpha1)
    of the same input set: one the predictor names by `runtime` gives the server's image,
    command, arguments and environment, which KServe would have taken from the cluster."""
    conv = Conversion(source=source, kind=KIND, name="")
    if not isinstance(doc, dict):
        conv.error = "not a Kubernetes object"
        return [conv]
    meta = doc.get("metadata")
    conv.name = str(meta.get("name", "")) if isinstance(meta, dict) else ""
    conv.kind = f"{text(doc.get('apiVersion', ''))} {text(doc.get('kind', ''))}".strip()
    if "default" in mapping(doc.get("spec")):
        conv.error = (
            "spec.default: the v1alpha2 (KFServing) shape; rewrite it as v1beta1 "
            "(spec.predictor) and convert again"
        )
        return [conv]
    return guarded(conv, lambda: _convert(doc, conv, runtimes or []))


def _convert(
    doc: dict[str, Any], conv: Conversion, runtimes: list[dict[str, Any]]
) -> list[Conversion]:
    meta = required_mapping(doc.get("metadata"), "metadata")
    spec = required_mapping(doc.get("spec"), "spec")
    predictor = required_mapping(spec.get("predictor"), "spec.predictor")
    annotations = mapping(meta.get("annotations"))
    out_meta = metadata(meta, KIND.split()[1], conv, READ_ANNOTATIONS)
    for key in spec:
        if key in {"transformer", "explainer"}:
            conv.note(
                f"spec.{key}",
                "dropped",
                f"Stratus serves the predictor only: no {key}",
                f"run the {key} as its own service in front of (or beside) this one",
            )
        elif key != "predictor":
            conv.note(f"spec.{key}", "dropped", "not a KServe field Stratus knows")
    mode = text(annotations.get(DEPLOYMENT_MODE, "Serverless"))
    if mode != "RawDeployment":
        conv.note(
            f"metadata.annotations.{DEPLOYMENT_MODE}",
            "changed",
            f"KServe's {mode} mode ({_MODES.get(mode, 'not a KServe mode')}) becomes a plain "
            "Deployment behind a Service, at least one replica",
        )

    container, model_uri_path, uri = _predictor(predictor, out_meta["name"], conv, runtimes)
    _component_notes(predictor, conv)
    own = _COMPONENT | _IMPLEMENTATION | LEGACY_FORMATS | set(_KNATIVE_ONLY) | set(_SIDE_FEATURES)
    pod, override = pod_fields(predictor, "spec.predictor", conv, own)
    for key in ("labels", "annotations"):
        if isinstance(predictor.get(key), dict):
            conv.note(
                f"spec.predictor.{key}",
                "changed",
                "set on the pods (podTemplate.metadata), not on a Knative revision",
            )
    pod_meta = {
        k: {str(a): text(b) for a, b in predictor[k].items()}
        for k in ("labels", "annotations")
        if isinstance(predictor.get(k), dict)
    }
    if "readinessPath" not in container:
        conv.note(
            "spec.predictor",
            "action",
            "no HTTP readiness probe on the server: Stratus probes GET /healthz",
            "set spec.readinessPath to a path the server answers when ready",
        )
    runtime_volumes = container.pop("volumes", [])
    if runtime_volumes:
        pod["volumes"] = runtime_volumes + pod.get("volumes", [])
    resource = assemble(conv, out_meta, container, pod, override, pod_meta or None)
    resource["spec"]["model"] = {"uri": _model_uri(uri, model_uri_path, conv)}
    _scaling(predictor, annotations, mode, resource["spec"], conv)
    _canary(predictor, resource["spec"], conv)
    return finish(conv, resource)


def _component_notes(predictor: dict[str, Any], conv: Conversion) -> None:
    for key in predictor:
        if key in _KNATIVE_ONLY:
            conv.note(
                f"spec.predictor.{key}",
                "dropped",
                f"{_KNATIVE_ONLY[key]}: Stratus serves without Knative",
                "enforce it in the server",
            )
        elif key in _SIDE_FEATURES:
            conv.note(
                f"spec.predictor.{key}",
                "dropped",
                f"Stratus has no {_SIDE_FEATURES[key]}",
                "do it in the server, or in front of the service",
            )


def _predictor(
    predictor: dict[str, Any], name: str, conv: Conversion, runtimes: list[dict[str, Any]]
) -> tuple[Manifest, str, Any]:
    """The server container's fields, and where the model's URI came from and what it is."""
    formats = [k for k in predictor if k in LEGACY_FORMATS]
    if "model" in predictor:
        impl = required_mapping(predictor["model"], "spec.predictor.model")
        path = "spec.predictor.model"
        model_format = impl.get("modelFormat")
        given = model_format.get("name") if isinstance(model_format, dict) else None
        if not isinstance(given, str):
            raise ValueError("spec.predictor.model.modelFormat.name missing")
        fmt = given.lower()
    elif formats:
        fmt = formats[0]
        path = f"spec.predictor.{fmt}"
        impl = required_mapping(predictor[fmt], path)
        for other in formats[1:]:
            conv.note(f"spec.predictor.{other}", "dropped", "a predictor has one model format")
    else:
        return _custom(predictor, conv)
    named = impl.get("runtime")
    found = _find_runtime(runtimes, named) if isinstance(named, str) else None
    _implementation_notes(impl, path, fmt, conv, found is not None)
    container = {k: v for k, v in impl.items() if k not in _IMPLEMENTATION}
    fields = container_fields(container, path, conv)
    if "image" not in fields and found is not None:
        fields = _from_runtime(found, name, fields, conv)
    elif "image" not in fields:
        runtime = RUNTIMES.get(fmt)
        if runtime is None and isinstance(named, str):
            raise ValueError(
                f"{path}.runtime: the ServingRuntime {named!r} holds the server's image and is "
                "not in the input; convert it together with the InferenceService"
            )
        if runtime is None:
            raise ValueError(
                f"{path}: model format {fmt!r} has no predefined KServe runtime Stratus knows "
                "and no image"
            )
        fields = _runtime_fields(runtime, name, fields)
        conv.note(
            f"{path}.modelFormat",
            "changed",
            f"KServe runs {fmt} models with its ServingRuntime {runtime.runtime}: Stratus runs "
            f"its image {runtime.image} with the same arguments"
            if runtime.runtime.startswith("kserve-")
            else f"KServe has no default runtime for {fmt}: Stratus runs {runtime.image}",
            "pin the image version your cluster's runtime used; check its args and readinessPath",
        )
    return fields, f"{path}.storageUri", impl.get("storageUri")


def _implementation_notes(
    impl: dict[str, Any], path: str, fmt: str, conv: Conversion, in_input: bool
) -> None:
    for key, value in impl.items():
        if key == "runtime" and not in_input:
            conv.note(
                f"{path}.runtime",
                "changed",
                f"the ServingRuntime {value!r} is defined in the cluster, not here",
                f"copy its image and args into spec.image and spec.args if they differ from "
                f"KServe's default {fmt} runtime's",
            )
        elif key in {"protocolVersion", "runtimeVersion"}:
            conv.note(
                f"{path}.{key}",
                "changed",
                f"KServe picked its server by {key}; Stratus runs the format's default image",
                "check the image serves the protocol and version your clients use",
            )
        elif key == "modelFormat" and mapping(value).get("version") is not None:
            conv.note(
                f"{path}.modelFormat.version",
                "changed",
                "the default runtime's image is used, whatever the format's version",
                "check the image supports it",
            )


def _custom(predictor: dict[str, Any], conv: Conversion) -> tuple[Manifest, str, Any]:
    """A custom container's fields; its model, if any, in KServe's STORAGE_URI variable."""
    containers = predictor.get("containers")
    if not isinstance(containers, list) or not containers:
        raise ValueError("spec.predictor has no model, model format or containers")
    first = required_mapping(containers[0], "spec.predictor.containers[0]")
    for i in range(1, len(containers)):
        conv.note(
            f"spec.predictor.containers[{i}]",
            "dropped",
            "Stratus runs one server container per replica",
            "fold the sidecar into the server image, or ask for a workload policy that adds it",
        )
    path = "spec.predictor.containers[0]"
    uri = None
    env = first.get("env")
    for i, entry in enumerate(env if isinstance(env, list) else []):
        if isinstance(entry, dict) and entry.get("name") == "STORAGE_URI":
            uri = entry.get("value")
            conv.note(
                f"{path}.env[{i}]",
                "changed",
                "KServe's storage initializer read STORAGE_URI: it is spec.model.uri now",
            )
    fields = container_fields(first, path, conv)
    if uri is not None:
        fields["env"] = [e for e in fields["env"] if e["name"] != "STORAGE_URI"]
        path = f"{path}.env.STORAGE_URI"
    else:
        path = "spec.predictor.containers[0]"
    return fields, path, uri


def _find_runtime(runtimes: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    named = [r for r in runtimes if mapping(r.get("metadata")).get("name") == name]
    # A namespaced ServingRuntime shadows a ClusterServingRuntime of the same name, as in KServe.
    named.sort(key=lambda r: r.get("kind") != "ServingRuntime")
    return named[0] if named else None


def _from_runtime(doc: dict[str, Any], name: str, given: Manifest, conv: Conversion) -> Manifest:
    """The server from a ServingRuntime in the input, the predictor's own fields over it (its
    args appended, its env added), as KServe merges them."""
    runtime_name = text(mapping(doc.get("metadata")).get("name"))
    path = f"{doc.get('kind', 'ServingRuntime')} {runtime_name}: spec"
    spec = required_mapping(doc.get("spec"), path)
    containers = spec.get("containers")
    if not isinstance(containers, list) or not containers:
        raise ValueError(f"{path}.containers is empty")
    first = {
        k: ([a.replace("{{.Name}}", name) for a in map(text, v)] if k in {"args", "command"} else v)
        for k, v in required_mapping(containers[0], f"{path}.containers[0]").items()
    }
    out = container_fields(first, f"{path}.containers[0]", conv)
    for key in spec:
        if key == "volumes":
            out["volumes"] = spec[key]
        elif key not in _RUNTIME_SELECTION | {"containers"}:
            conv.note(f"{path}.{key}", "dropped", "not a server setting Stratus carries")
    for i in range(1, len(containers)):
        conv.note(f"{path}.containers[{i}]", "dropped", "Stratus runs one server container")
    args = out.pop("args", []) + given.pop("args", [])
    if args:
        out["args"] = args
    env = {e["name"]: e for e in out.pop("env", [])} | {e["name"]: e for e in given.pop("env", [])}
    if env:
        out["env"] = list(env.values())
    if given.get("resources") == {"gpu": 0} and "resources" in out:
        given.pop("resources")
    out.update(given)
    conv.note(
        path,
        "changed",
        f"the server is the runtime's first container, with {{{{.Name}}}} as {name!r}",
    )
    return out


def _runtime_fields(runtime: Runtime, name: str, given: Manifest) -> Manifest:
    out: Manifest = {
        "image": runtime.image,
        "port": runtime.port,
        "readinessPath": runtime.readiness.format(name=name),
    }
    if runtime.command:
        out["command"] = list(runtime.command)
    args = [a.format(name=name) for a in runtime.args] + given.pop("args", [])
    if args:
        out["args"] = args
    env = [{"name": k, "value": v.format(name=name)} for k, v in runtime.env]
    if env or given.get("env"):
        out["env"] = env + given.pop("env", [])
    out.update(given)
    return out


def _model_uri(given: Any, path: str, conv: Conversion) -> str:
    if given is None:
        conv.note(
            path,
            "action",
            "no storageUri: a Stratus InferenceService always stages a model, and this one "
            f"names none (spec.model.uri is the placeholder {PLACEHOLDER_MODEL_URI})",
            "put the model in s3://, gs://, https:// or a PVC and set spec.model.uri",
        )
        return PLACEHOLDER_MODEL_URI
    uri = text(given)
    scheme = uri.partition("://")[0]
    if scheme in {"s3", "gs"}:
        conv.note(
            path,
            "action",
            "KServe read the store's credentials from its ServiceAccount's Secret",
            "set spec.model.credentialsSecret (and spec.model.endpoint for a store other than "
            "AWS S3 or GCS), unless the pods' own identity may read the bucket",
        )
        if not uri.endswith("/") and not _FILE.search(uri):
            conv.note(
                path,
                "changed",
                "a KServe prefix is a directory: Stratus stages every file its "
                "stratus-manifest.json lists, so the URI now ends in /",
                "write stratus-manifest.json (each file's size and SHA-256) into the prefix",
            )
            return uri + "/"
        return uri
    if scheme == "https":
        if uri.endswith(_ARCHIVE):
            conv.note(
                path,
                "changed",
                "KServe unpacks an archive; Stratus stages the file as it is",
                "serve the unpacked files, or have the server unpack it",
            )
        return uri
    if scheme == "pvc":
        return uri
    conv.note(
        path,
        "action",
        f"Stratus stages models from s3://, gs://, https:// and pvc:// only, not {scheme}:// "
        f"(spec.model.uri is the placeholder {PLACEHOLDER_MODEL_URI})",
        "copy the model to one of those and set spec.model.uri",
    )
    return PLACEHOLDER_MODEL_URI


def _scaling(
    predictor: dict[str, Any], annotations: dict[str, Any], mode: str, spec: Manifest, c: Conversion
) -> None:
    path = "spec.predictor"
    low = predictor.get("minReplicas", annotations.get(KNATIVE_MIN))
    high = predictor.get("maxReplicas", annotations.get(KNATIVE_MAX))
    low_n = 1 if low is None else whole(low, f"{path}.minReplicas")
    if low_n < 1:
        c.note(
            f"{path}.minReplicas",
            "changed",
            "Stratus does not scale to zero: min is 1",
            "budget one replica's GPUs at all times",
        )
        low_n = 1
    high_n = low_n if high is None else whole(high, f"{path}.maxReplicas")
    if high is not None and high_n == 0:
        high_n = low_n
        c.note(
            f"{path}.maxReplicas",
            "changed",
            "0 (no limit) is not a Stratus value: max is min",
            "set spec.replicas.max",
        )
    if high_n < low_n:
        c.note(f"{path}.maxReplicas", "changed", "below minReplicas: raised to it")
        high_n = low_n
    spec["replicas"] = {"min": low_n, "max": high_n}
    metric = predictor.get("scaleMetric", annotations.get(KNATIVE_METRIC))
    metric_path = (
        f"metadata.annotations.{KNATIVE_METRIC}"
        if "scaleMetric" not in predictor and KNATIVE_METRIC in annotations
        else f"{path}.scaleMetric"
    )
    target = predictor.get("scaleTarget", annotations.get(KNATIVE_TARGET))
    for key in ("scaleMetricType", "autoScaling"):
        if key in predictor:
            c.note(
                f"{path}.{key}",
                "dropped",
                "Stratus scales on average CPU or memory utilization, or a Prometheus query "
                "per replica",
                "set spec.autoscaling",
            )
    if metric is None and mode == "RawDeployment":
        metric = "cpu"
        target = 80 if target is None else target
    elif metric is None:
        metric = "concurrency"
    metric = text(metric)
    if high_n == low_n:
        explicit = [k for k in ("scaleMetric", "scaleTarget") if predictor.get(k) is not None] + [
            k for k in (KNATIVE_METRIC, KNATIVE_TARGET) if k in annotations
        ]
        if explicit:
            c.note(f"{path}.{explicit[0]}", "dropped", "min equals max: nothing to scale")
        return
    if metric in {"cpu", "memory"}:
        value = 80 if target is None else whole(target, metric_path)
        spec["autoscaling"] = {"metric": metric, "target": value}
        return
    c.note(
        metric_path,
        "dropped",
        f"Stratus has no {metric} metric built in; without autoscaling the service runs "
        "min replicas",
        "set spec.autoscaling to metric prometheus with a PromQL query of your server's "
        f"{metric} per replica, and its target",
    )


def _canary(predictor: dict[str, Any], spec: Manifest, conv: Conversion) -> None:
    percent = predictor.get("canaryTrafficPercent")
    if percent is None:
        return
    path = "spec.predictor.canaryTrafficPercent"
    value = whole(percent, path)
    if value >= 100:
        return
    if value <= 0:
        conv.note(
            path,
            "dropped",
            "0 sends all traffic to KServe's previous revision: a rollback, not a rollout",
            "keep the previous model's spec until the new one should roll out",
        )
        return
    spec["rollout"] = {"steps": [{"weight": value, "pause": {}}, {"weight": 100}]}
    conv.note(
        path,
        "changed",
        f"KServe holds the canary at {value}% until canaryTrafficPercent is removed; Stratus "
        "holds the same step until `stratus promote` (an analysis can roll it back)",
        "promote with `stratus promote`; add rollout.analysis metrics to judge the canary",
    )
