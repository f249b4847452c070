"""Which converter takes which document: by API group and kind for Kubernetes objects, the Slurm
converter for scripts. Converters are named, not imported, so that each module can land alone."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stratus.convert.inputs import Document
from stratus.convert.report import Conversion, UnsupportedInput

Converter = Callable[..., list[Conversion]]

REGISTRY: dict[tuple[str, str], str] = {
    ("kubeflow.org", "PyTorchJob"): "stratus.convert.kubeflow:convert_pytorchjob",
    ("kubeflow.org", "TFJob"): "stratus.convert.kubeflow:convert_tfjob",
    ("kubeflow.org", "MPIJob"): "stratus.convert.kubeflow:convert_mpijob",
    ("kubeflow.org", "PaddleJob"): "stratus.convert.kubeflow:convert_paddlejob",
    ("kubeflow.org", "XGBoostJob"): "stratus.convert.kubeflow:convert_xgboostjob",
    ("kubeflow.org", "JAXJob"): "stratus.convert.kubeflow:convert_jaxjob",
    ("trainer.kubeflow.org", "TrainJob"): "stratus.convert.kubeflow:convert_trainjob",
    ("batch", "Job"): "stratus.convert.kubeflow:convert_job",
    ("serving.kserve.io", "InferenceService"): "stratus.convert.kserve:convert_inferenceservice",
    # KServe's v1beta1 before its rename: the same shape.
    ("serving.kubeflow.org", "InferenceService"): "stratus.convert.kserve:convert_inferenceservice",
    ("argoproj.io", "Rollout"): "stratus.convert.argo:convert_rollout",
}
SCRIPT_CONVERTER = "stratus.convert.slurm:convert_slurm"
# Analysis templates are not workloads: each Rollout's converter gets all of them, as
# `templates=[...]`, and picks the ones it names.
TEMPLATE_KINDS = {("argoproj.io", "AnalysisTemplate"), ("argoproj.io", "ClusterAnalysisTemplate")}
ROLLOUT = ("argoproj.io", "Rollout")
# Likewise KServe's serving runtimes: each InferenceService's converter gets all of them, as
# `runtimes=[...]`, and takes the image of the one it uses.
RUNTIME_KINDS = {
    ("serving.kserve.io", "ServingRuntime"),
    ("serving.kserve.io", "ClusterServingRuntime"),
}
INFERENCE_SERVICES = {
    ("serving.kserve.io", "InferenceService"),
    ("serving.kubeflow.org", "InferenceService"),
}
# Errors a converter may raise on a document it did not expect; they become that document's
# one-line error, and the rest of the input still converts.
_INPUT_ERRORS = (UnsupportedInput, ValueError, KeyError, TypeError, AttributeError, IndexError)


def group_kind(doc: dict[str, Any]) -> tuple[str, str]:
    api_version = doc.get("apiVersion")
    group = api_version.rpartition("/")[0] if isinstance(api_version, str) else ""
    kind = doc.get("kind")
    return group, kind if isinstance(kind, str) else ""


def _name(doc: dict[str, Any]) -> str:
    metadata = doc.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    return name if isinstance(name, str) else ""


def load(target: str) -> Converter | None:
    """The converter a registry entry names, or None when its module has not landed."""
    module_name, _, function = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return None
        raise
    converter: Converter | None = getattr(module, function, None)
    return converter


def _failed(doc: Document, kind: str, name: str, error: str) -> Conversion:
    return Conversion(source=doc.source, kind=kind, name=name, error=error)


def convert(docs: list[Document]) -> list[Conversion]:
    """Every document converted, in input order; one that cannot be gets its one-line error."""
    templates = [
        d.content
        for d in docs
        if isinstance(d.content, dict) and group_kind(d.content) in TEMPLATE_KINDS
    ]
    rollouts = [
        d.content for d in docs if isinstance(d.content, dict) and group_kind(d.content) == ROLLOUT
    ]
    runtimes = [
        d.content
        for d in docs
        if isinstance(d.content, dict) and group_kind(d.content) in RUNTIME_KINDS
    ]
    services = [
        d.content
        for d in docs
        if isinstance(d.content, dict) and group_kind(d.content) in INFERENCE_SERVICES
    ]
    out: list[Conversion] = []
    for doc in docs:
        out += _convert_one(doc, Companions(templates, rollouts, runtimes, services))
    return out


@dataclass(frozen=True)
class Companions:
    """The documents of an input set that are read along with others, not converted alone."""

    templates: list[dict[str, Any]]
    rollouts: list[dict[str, Any]]
    runtimes: list[dict[str, Any]]
    services: list[dict[str, Any]]


def _convert_one(doc: Document, companions: Companions) -> list[Conversion]:
    if doc.error is not None or doc.content is None:
        return [_failed(doc, "", "", doc.error or "empty document")]
    return _convert_content(doc, doc.content, companions)


def _convert_content(
    doc: Document, content: dict[str, Any] | str, companions: Companions
) -> list[Conversion]:
    if isinstance(content, str):
        kind, name, target = "slurm batch script", doc.source.rpartition("/")[2], SCRIPT_CONVERTER
        kwargs: dict[str, Any] = {}
    else:
        group, kind_name = group_kind(content)
        kind = f"{content.get('apiVersion', '')} {kind_name}".strip()
        name = _name(content)
        read_along = _read_along((group, kind_name), name, companions)
        if read_along is not None:
            return [_companion(doc, kind, name, *read_along)]
        if not kind_name or not content.get("apiVersion"):
            return [_failed(doc, kind, name, "apiVersion or kind missing: not a Kubernetes object")]
        target = REGISTRY.get((group, kind_name), "")
        if not target:
            return [_failed(doc, kind, name, f"no converter for {kind} (nothing to do with it)")]
        kwargs = {}
        if (group, kind_name) == ROLLOUT:
            kwargs = {"templates": companions.templates}
        elif (group, kind_name) in INFERENCE_SERVICES:
            kwargs = {"runtimes": companions.runtimes}
    converter = load(target)
    if converter is None:
        return [_failed(doc, kind, name, f"no converter for {kind} yet")]
    try:
        return converter(content, doc.source, **kwargs)
    except _INPUT_ERRORS as exc:
        return [_failed(doc, kind, name, f"cannot convert: {exc}")]


def _read_along(
    kind: tuple[str, str], name: str, companions: Companions
) -> tuple[str, list[str]] | None:
    """For a document read along with workloads: what it goes into, and which name it."""
    if kind in TEMPLATE_KINDS:
        users = [_name(r) for r in companions.rollouts if name in _template_names(r)]
        return "the analysis of Rollout", users
    if kind in RUNTIME_KINDS:
        users = [_name(s) for s in companions.services if name in _runtime_names(s)]
        return "InferenceService", users
    return None


def _companion(doc: Document, kind: str, name: str, into: str, users: list[str]) -> Conversion:
    """The report's entry for a document read along with the workloads that name it."""
    conversion = Conversion(source=doc.source, kind=kind, name=name)
    if users:
        conversion.note("(whole)", "changed", f"merged into {into} {', '.join(users)}")
    else:
        conversion.note(
            "(whole)",
            "dropped",
            f"nothing in the input names it ({into} that would)",
            "convert it together with what names it",
        )
    return conversion


def _runtime_names(service: dict[str, Any]) -> set[str]:
    """The runtime an InferenceService names (spec.predictor.model.runtime)."""
    predictor = (service.get("spec") or {}).get("predictor") or {}
    model = predictor.get("model") if isinstance(predictor, dict) else None
    runtime = model.get("runtime") if isinstance(model, dict) else None
    return {runtime} if isinstance(runtime, str) else set()


def _template_names(node: Any) -> set[str]:
    """Every templateName a Rollout mentions, wherever it sits (steps, background analysis)."""
    if isinstance(node, dict):
        found = {node["templateName"]} if isinstance(node.get("templateName"), str) else set()
        for value in node.values():
            found |= _template_names(value)
        return found
    if isinstance(node, list):
        return set().union(*(_template_names(v) for v in node)) if node else set()
    return set()
