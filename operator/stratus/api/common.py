"""Types shared by both resources: the base model, cross-field rules, quantities, durations, the
workload's container fields, GPU resources and status conditions."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict

GROUP = "stratus.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

# Go-style durations, as Kubernetes and Argo Rollouts write them: 90s, 10m, 1h30m, 500ms.
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
# Kubernetes resource quantities without a sign (as apimachinery's own schema, minus the sign).
QUANTITY_PATTERN = (
    r"^(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|"
    r"(\.[0-9]+))))?$"
)
LABEL_VALUE_PATTERN = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# What a Service name must be (RFC 1035): a letter first, no dots.
DNS_1035_LABEL_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# Marks a schema the CRD generator turns into x-kubernetes-int-or-string.
INT_OR_STRING = "x-stratus-int-or-string"
# An S3-compatible store's address: scheme, host and port only. No userinfo (credentials come
# from a Secret, never from the spec) and no path, query or fragment.
ENDPOINT_PATTERN = r"^https?://[-A-Za-z0-9.]+(:[0-9]{1,5})?/?$"
# What the pods read from a credentials Secret, under these keys; AWS_REGION may be absent.
CREDENTIAL_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
REGION_KEY = "AWS_REGION"
ENDPOINT_KEY = "AWS_ENDPOINT_URL"
# A bucket in an s3:// or gs:// URI: the names S3 (3 to 63) and GCS (3 to 222 characters) allow.
BUCKET_PATTERN = r"[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]"
# Google Cloud Storage's S3-compatible (XML) API, which gs:// models use with HMAC keys.
GCS_ENDPOINT = "https://storage.googleapis.com"


@dataclass(frozen=True)
class Rule:
    """A rule across fields, stated twice on purpose: as CEL for the API server (an
    x-kubernetes-validations entry) and as Python for the models. The property test holds the
    two to the same verdicts."""

    cel: str
    message: str
    check: Callable[[Any], bool]
    field_path: str | None = None

    def crd(self) -> dict[str, str]:
        entry = {"rule": self.cel, "message": self.message}
        if self.field_path:
            entry["fieldPath"] = self.field_path
        return entry


def _schema_rules(schema: dict[str, Any], cls: type) -> None:
    rules: tuple[Rule, ...] = getattr(cls, "rules", ())
    if rules:
        schema["x-kubernetes-validations"] = [rule.crd() for rule in rules]


class ApiModel(BaseModel):
    """camelCase on the wire, snake_case in Python, unknown fields refused."""

    # strict: "4" is not 4 to the API server, so not to the models either.
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        strict=True,
        json_schema_extra=_schema_rules,
    )
    rules: ClassVar[tuple[Rule, ...]] = ()

    @model_validator(mode="after")
    def _check_rules(self) -> ApiModel:
        for rule in self.rules:
            if not rule.check(self):
                where = rule.field_path.lstrip(".") + ": " if rule.field_path else ""
                raise ValueError(where + rule.message)
        return self


class OpenModel(ApiModel):
    """A Kubernetes structure passed through as written: known fields typed, the rest kept."""

    model_config = ConfigDict(extra="allow")


def _quantity(value: int | str) -> int | str:
    # fullmatch: the API server's regexes (RE2) do not let `$` match before a final newline.
    if isinstance(value, str) and not re.fullmatch(QUANTITY_PATTERN, value):
        raise ValueError(f"{value!r} is not a quantity such as 8, 500m or 16Gi")
    if isinstance(value, int) and value < 0:
        raise ValueError("must not be negative")
    return value


Quantity = Annotated[
    int | str,
    AfterValidator(_quantity),
    Field(json_schema_extra={INT_OR_STRING: True, "pattern": QUANTITY_PATTERN}),
]
Duration = Annotated[str, Field(pattern=DURATION_PATTERN, max_length=32)]
# The same pattern, written for a CEL string literal (no backslash escapes).
DURATION_PATTERN_CEL = DURATION_PATTERN.replace(r"\.", "[.]")
_DURATION_UNITS_NS = {"ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
# The longest duration Go (and so CEL's duration()) can hold: about 292 years.
_MAX_GO_DURATION_NS = 2**63 - 1


def duration_seconds(text: str) -> float | None:
    """A duration matching DURATION_PATTERN in seconds, as Go's time.ParseDuration (and
    CEL's duration()) reads it; None when it is too long for Go to hold."""
    total = sum(
        Fraction(number) * _DURATION_UNITS_NS[unit]
        for number, unit in re.findall(r"([0-9.]+)(ms|s|m|h)", text)
    )
    if total > _MAX_GO_DURATION_NS:
        return None
    return float(total / 10**9)


def at_least(text: str, seconds: float) -> bool:
    """Whether a valid duration is at least `seconds` (and short enough for Go to hold)."""
    value = duration_seconds(text)
    return value is not None and value >= seconds


def min_duration_rule(field: str, minimum: str, value: Callable[[Any], str]) -> Rule:
    """The duration field `field` (its JSON name) is at least `minimum`; a value that is not a
    duration is left to the field's pattern, which names it already."""
    seconds = duration_seconds(minimum)
    assert seconds is not None
    return Rule(
        cel=f"!has(self.{field}) || "
        f"!self.{field}.matches('{DURATION_PATTERN_CEL}') || "
        f"duration(self.{field}) >= duration('{minimum}')",
        message=f"must be at least {minimum}",
        field_path=f".{field}",
        check=lambda model: at_least(value(model), seconds),
    )


def service_name_rule(kind: str) -> Rule:
    """A rule at the root of a resource: its name is also the name of a Service the operator
    creates, so it must be a DNS-1035 label (CEL may read metadata.name at the root)."""
    return Rule(
        cel=f"self.metadata.name.matches('{DNS_1035_LABEL_PATTERN}')",
        message=f"must be a DNS-1035 label, as the Service named after the {kind} must be: "
        "lowercase letters, digits and '-', starting with a letter and ending with a letter or "
        "digit (e.g. web-v2, not 1web or web.v2)",
        field_path=".metadata.name",
        check=lambda obj: (
            re.fullmatch(DNS_1035_LABEL_PATTERN, str(obj["metadata"]["name"])) is not None
        ),
    )


# Conditions are keyed by type, as metav1.Condition lists are.
CONDITIONS_LIST: JsonDict = {
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["type"],
}
# An object field whose nested defaults the API server fills in even when it is omitted.
DEFAULTED: JsonDict = {"default": {}}


Endpoint = Annotated[str, Field(pattern=ENDPOINT_PATTERN, max_length=2048)]
SecretName = Annotated[str, Field(pattern=DNS_SUBDOMAIN_PATTERN, max_length=253)]


def endpoint_description(default: str) -> str:
    return (
        "URL of an S3-compatible store (http:// or https://, host and port only), for "
        f"example https://storage.googleapis.com or http://seaweedfs.storage:8333; {default}. "
        "Given to the pod as AWS_ENDPOINT_URL; the store is addressed path-style."
    )


def credentials_description(use: str, without: str) -> str:
    return (
        "Name of a Secret in the same namespace with the keys AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY (HMAC keys for Google Cloud Storage), and optionally AWS_REGION "
        "and, when endpoint is not set, AWS_ENDPOINT_URL (the store's address). "
        f"{use} gets them as environment variables that refer to the Secret (secretKeyRef): "
        f"their values are never copied into a child, a status or a log. {without}"
    )


class EnvVar(ApiModel):
    """An environment variable, as in a Pod's container."""

    name: str = Field(min_length=1, max_length=256, description="Variable name.")
    value: str | None = Field(default=None, description="Literal value.")
    value_from: dict[str, Any] | None = Field(
        default=None,
        description="A source for the value (secretKeyRef, configMapKeyRef, fieldRef, "
        "resourceFieldRef), exactly as in a Pod's container.",
    )


class EnvFromSource(OpenModel):
    """A source of environment variables (configMapRef or secretRef, optional prefix), as in a
    Pod's container."""


class Volume(OpenModel):
    """A volume, exactly as in a Pod's spec."""

    name: str = Field(pattern=DNS_LABEL_PATTERN, max_length=63, description="Volume name.")


class VolumeMount(ApiModel):
    """Where a volume is mounted in the workload's container."""

    name: str = Field(max_length=63, description="Name of a volume in `volumes`.")
    mount_path: str = Field(pattern=r"^/", max_length=4096, description="Absolute path.")
    sub_path: str | None = Field(default=None, description="Sub-path of the volume to mount.")
    read_only: bool = Field(default=False, description="Mount read-only.")


class PodSpecOverride(OpenModel):
    """A partial PodSpec. Its required node-affinity terms are AND-ed into every generated one,
    so placement only narrows; the cluster's workload policy decides what else it may set."""

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="!has(self.nodeName)",
            message="must not be set: it would skip the scheduler and the generated placement "
            "(GPU type, spot or on-demand capacity, taints); use nodeSelector or affinity",
            field_path=".nodeName",
            check=lambda s: s.node_name is None,
        ),
    )

    # Declared only so that CEL can see it (fields a schema keeps unknown are hidden from CEL).
    node_name: str | None = Field(default=None, description="Not allowed: placement only narrows.")


class PodTemplateOverride(ApiModel):
    """What the simple form cannot say: a partial pod template merged over the generated one
    (labels and annotations are added; spec fields replace the generated ones, lists such as
    tolerations are appended, required node-affinity terms are AND-ed into the generated ones)."""

    metadata: PodMetadata | None = Field(default=None, description="Extra labels and annotations.")
    spec: PodSpecOverride | None = Field(default=None, description=PodSpecOverride.__doc__)


class PodMetadata(ApiModel):
    """Labels and annotations for the generated pods."""

    labels: dict[str, str] = Field(default_factory=dict, description="Extra pod labels.")
    annotations: dict[str, str] = Field(default_factory=dict, description="Extra annotations.")


class Workload(ApiModel):
    """The container that does the work: image, command, environment and volumes."""

    image: str = Field(min_length=1, max_length=1024, description="Container image.")
    command: list[str] = Field(
        default_factory=list,
        max_length=64,
        description="Entrypoint; the image's ENTRYPOINT when empty.",
    )
    args: list[str] = Field(
        default_factory=list, max_length=256, description="Arguments; the image's CMD when empty."
    )
    env: list[EnvVar] = Field(
        default_factory=list, max_length=256, description="Environment variables."
    )
    env_from: list[EnvFromSource] = Field(
        default_factory=list,
        max_length=32,
        description="Sources of environment variables (ConfigMaps, Secrets).",
    )
    working_dir: str | None = Field(default=None, description="Working directory.")
    volumes: list[Volume] = Field(
        default_factory=list, max_length=64, description="Extra volumes for the pods."
    )
    volume_mounts: list[VolumeMount] = Field(
        default_factory=list, max_length=64, description="Where the extra volumes are mounted."
    )
    pod_template: PodTemplateOverride | None = Field(
        default=None, description=PodTemplateOverride.__doc__
    )
    team: str | None = Field(
        default=None,
        max_length=63,
        pattern=LABEL_VALUE_PATTERN,
        description="Team, copied as the label stratus.dev/team onto everything created; "
        "metering and budgets count by it.",
    )
    cost_center: str | None = Field(
        default=None,
        max_length=63,
        pattern=LABEL_VALUE_PATTERN,
        description="Cost center, copied as the label stratus.dev/cost-center.",
    )


class GpuResources(ApiModel):
    """Resources of one worker or replica."""

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="!has(self.gpuType) || self.gpu > 0",
            message="gpuType needs gpu > 0",
            field_path=".gpuType",
            check=lambda r: r.gpu_type is None or r.gpu > 0,
        ),
    )

    gpu: int = Field(
        default=1, ge=0, le=64, description="GPUs (`nvidia.com/gpu`) per worker or replica."
    )
    gpu_type: str | None = Field(
        default=None,
        min_length=1,
        max_length=63,
        pattern=LABEL_VALUE_PATTERN,
        description="GPU product the pods need, matched against the node label "
        "`nvidia.com/gpu.product` (for example NVIDIA-H100-80GB-HBM3).",
    )
    cpu: Quantity | None = Field(default=None, description="CPU request and limit, e.g. 8 or 500m.")
    memory: Quantity | None = Field(
        default=None, description="Memory request and limit, e.g. 64Gi."
    )


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(ApiModel):
    """A Kubernetes-style status condition."""

    type: str = Field(description="Condition type, e.g. Ready.")
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(default="", description="One CamelCase word for machines.")
    message: str = Field(default="", description="What happened, for humans.")
    last_transition_time: str | None = Field(
        default=None, description="When the status last changed (RFC 3339)."
    )
    observed_generation: int | None = Field(
        default=None, description="The spec generation the condition was computed from."
    )


PodTemplateOverride.model_rebuild()
