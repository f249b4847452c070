"""Each custom resource's identity (names, printer columns) and whole-object validation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from stratus.api import budget, inferenceservice, trainingjob
from stratus.api.common import API_VERSION, GROUP, Rule, service_name_rule

CATEGORIES = ("stratus", "ml")


@dataclass(frozen=True)
class PrinterColumn:
    name: str
    json_path: str
    type: str = "string"
    description: str = ""
    priority: int = 0

    def crd(self) -> dict[str, Any]:
        column: dict[str, Any] = {"name": self.name, "type": self.type, "jsonPath": self.json_path}
        if self.description:
            column["description"] = self.description
        if self.priority:
            column["priority"] = self.priority
        return column


@dataclass(frozen=True)
class ResourceType:
    kind: str
    plural: str
    short_names: tuple[str, ...]
    spec: type[BaseModel]
    status: type[BaseModel]
    max_name_length: int
    columns: tuple[PrinterColumn, ...]
    description: str
    # Rules on the whole object (CEL at the schema's root, where it may read metadata.name).
    rules: tuple[Rule, ...] = ()
    scope: str = "Namespaced"
    categories: tuple[str, ...] = CATEGORIES

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"


AGE = PrinterColumn("Age", ".metadata.creationTimestamp", "date")

TRAINING_JOB = ResourceType(
    kind=trainingjob.KIND,
    plural=trainingjob.PLURAL,
    short_names=("tj",),
    spec=trainingjob.TrainingJobSpec,
    status=trainingjob.TrainingJobStatus,
    max_name_length=trainingjob.MAX_NAME_LENGTH,
    columns=(
        PrinterColumn("Phase", ".status.phase"),
        PrinterColumn("Attempt", ".status.attempt", "integer"),
        PrinterColumn("Preemptions", ".status.preemptions", "integer"),
        PrinterColumn("GPUs", ".spec.resources.gpu", "integer", "GPUs per worker"),
        PrinterColumn("Workers", ".spec.workers", "integer", priority=1),
        PrinterColumn(
            "Checkpoint", ".status.lastCheckpoint.step", "integer", "Step of the latest checkpoint"
        ),
        AGE,
    ),
    description="A GPU training run that survives spot preemption: each attempt is a Job, and "
    "a preempted attempt is followed by one that resumes from the latest checkpoint.",
    # The headless Service of the workers is named after the TrainingJob.
    rules=(service_name_rule(trainingjob.KIND),),
)

INFERENCE_SERVICE = ResourceType(
    kind=inferenceservice.KIND,
    plural=inferenceservice.PLURAL,
    short_names=("infs",),
    spec=inferenceservice.InferenceServiceSpec,
    status=inferenceservice.InferenceServiceStatus,
    max_name_length=inferenceservice.MAX_NAME_LENGTH,
    columns=(
        PrinterColumn("Phase", ".status.phase"),
        PrinterColumn("Stable", ".status.stableRevision"),
        PrinterColumn("Canary", ".status.canaryRevision"),
        PrinterColumn("Weight", ".status.canaryWeight", "integer", "Canary traffic, percent"),
        PrinterColumn("Ready", ".status.readyReplicas", "integer"),
        PrinterColumn("URL", ".status.url", priority=1),
        AGE,
    ),
    description="A GPU model server whose new revisions roll out as canaries, promoted or "
    "rolled back on Prometheus metrics.",
    # One Service is named `<name>`, and with an HTTPRoute one per revision `<name>-<revision>`.
    rules=(service_name_rule(inferenceservice.KIND),),
)

BUDGET = ResourceType(
    kind=budget.KIND,
    plural=budget.PLURAL,
    short_names=(),
    spec=budget.BudgetSpec,
    status=budget.BudgetStatus,
    max_name_length=budget.MAX_NAME_LENGTH,
    columns=(
        PrinterColumn("Window", ".spec.window.type"),
        PrinterColumn("Used%", ".status.percentUsed", "number", "Usage, percent of the limit"),
        PrinterColumn("Remaining", ".status.remaining", "number", "In the limit's unit"),
        PrinterColumn("Action", ".spec.action"),
        PrinterColumn("Rollover", ".status.windowEnd", priority=1),
        AGE,
    ),
    description="The admin's cap on GPU-hours or money spent by teams or namespaces in a "
    "recurring window; at its limit new TrainingJob attempts wait (or run on spot only).",
    # The admin's, not the tenants': cluster-scoped, and not among what `kubectl get ml` lists.
    scope="Cluster",
    categories=("stratus",),
)

RESOURCE_TYPES = (TRAINING_JOB, INFERENCE_SERVICE, BUDGET)


class InvalidResourceError(ValueError):
    pass


def resource_type(kind: str) -> ResourceType:
    for rtype in RESOURCE_TYPES:
        if rtype.kind == kind:
            return rtype
    raise InvalidResourceError(f"kind: unknown kind {kind!r}")


def validate(obj: dict[str, Any]) -> BaseModel:
    """Validate a whole object as the API server would; return its spec model."""
    if obj.get("apiVersion") != API_VERSION:
        raise InvalidResourceError(f"apiVersion: must be {API_VERSION}")
    rtype = resource_type(str(obj.get("kind")))
    name = (obj.get("metadata") or {}).get("name")
    if not isinstance(name, str) or not name:
        raise InvalidResourceError("metadata.name: required")
    if len(name) > rtype.max_name_length:
        raise InvalidResourceError(
            f"metadata.name: may not be more than {rtype.max_name_length} characters"
        )
    for rule in rtype.rules:
        if not rule.check(obj):
            where = (rule.field_path or "").lstrip(".")
            raise InvalidResourceError(f"{where}: {rule.message}" if where else rule.message)
    try:
        return rtype.spec.model_validate(obj.get("spec") or {})
    except ValidationError as exc:
        raise InvalidResourceError("\n".join(_describe(e) for e in exc.errors())) from exc


def _describe(error: ErrorDetails) -> str:
    """One error as `spec.<path>: <message>`, the way the API server names fields."""
    path = "spec" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    # Rules raise "<field>: <message>" from the object holding the field.
    field, sep, rest = message.partition(": ")
    if sep and field.isidentifier():
        path, message = f"{path}.{field}", rest
    return f"{path}: {message}"
