"""InferenceService: GPU model serving whose new revisions roll out as metric-gated canaries."""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator
from pydantic.config import JsonDict

from stratus.api.common import (
    BUCKET_PATTERN,
    CONDITIONS_LIST,
    DEFAULTED,
    DNS_LABEL_PATTERN,
    DNS_SUBDOMAIN_PATTERN,
    GCS_ENDPOINT,
    ApiModel,
    Condition,
    Duration,
    Endpoint,
    GpuResources,
    Quantity,
    Rule,
    SecretName,
    Workload,
    credentials_description,
    endpoint_description,
    min_duration_rule,
)
from stratus.api.schedule import Idle, ScheduleStatus, ServingSchedule
from stratus.api.usage import Usage
from stratus.api.validation import Validation

KIND = "InferenceService"
PLURAL = "inferenceservices"
# `<name>-<revision hash>` must stay a valid Deployment and label value; `<name>` a Service name.
MAX_NAME_LENGTH = 52
MAX_STEPS = 20
METRICS_LIST: JsonDict = {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]}
# Analysis queries Prometheus once per interval: a shorter one would query it in a tight loop.
MIN_ANALYSIS_INTERVAL = "1s"
# A canary gets at least this long to become ready: a shorter deadline would roll back every one.
MIN_PROGRESS_DEADLINE = "1s"
# Autoscaling targets, as strings: a whole percentage, and a plain number KEDA's threshold reads
# (a float, so no quantity suffixes). Bounded digits keep CEL's int() and double() from failing.
PERCENT_PATTERN = r"^[0-9]{1,3}$"
NUMBER_PATTERN = r"^[0-9]{1,15}([.][0-9]{1,15})?$"
# A model's size limit: whole bytes as a quantity the API server takes for an emptyDir's
# sizeLimit, small enough to fit an int64 (at most 999999Ti, or 15 plain digits).
SIZE_PATTERN = r"^([1-9][0-9]{0,5}(Ki|Mi|Gi|Ti|k|M|G|T)|[1-9][0-9]{0,14})$"
DEFAULT_MODEL_SIZE_LIMIT = "100Gi"
# pvc://<claim>/<path>: the claim a PersistentVolumeClaim name, the path never climbing out.
PVC_CLAIM_PATTERN = r"^pvc://[a-z0-9]([-a-z0-9.]*[a-z0-9])?(/|$)"
PVC_UP_PATTERN = r"/[.][.](/|$)"
# s3:// and gs:// models: a bucket, then a key (one object) or a prefix ending in / (a directory).
OBJECT_SCHEME_PATTERN = r"^(s3|gs)://"
OBJECT_URI_PATTERN = f"^(s3|gs)://{BUCKET_PATTERN}(/[^?#]*)?$"
# What a directory model's prefix holds beside its files: each file's size and SHA-256.
MODEL_MANIFEST = "stratus-manifest.json"


def _object_store(uri: str) -> bool:
    return re.search(OBJECT_SCHEME_PATTERN, uri) is not None


def _percentage(target: int | str) -> bool:
    if isinstance(target, int):
        return 1 <= target <= 100
    return re.fullmatch(PERCENT_PATTERN, target) is not None and 1 <= int(target) <= 100


def _positive_number(target: int | str) -> bool:
    if isinstance(target, int):
        return target > 0
    return re.fullmatch(NUMBER_PATTERN, target) is not None and float(target) > 0


class ModelSource(ApiModel):
    """The model the server loads, staged into the pod by an init container."""

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="!has(self.caConfigMap) || self.uri.startsWith('https://')",
            message="caConfigMap applies to https:// models only",
            field_path=".caConfigMap",
            check=lambda m: m.ca_config_map is None or m.uri.startswith("https://"),
        ),
        Rule(
            cel="!self.uri.startsWith('pvc://') || "
            f"(self.uri.matches('{PVC_CLAIM_PATTERN}') && !self.uri.matches('{PVC_UP_PATTERN}'))",
            message="a pvc:// model is pvc://<claim>/<path>: a claim name, and no '..' in the path",
            field_path=".uri",
            check=lambda m: (
                not m.uri.startswith("pvc://")
                or (
                    re.search(PVC_CLAIM_PATTERN, m.uri) is not None
                    and re.search(PVC_UP_PATTERN, m.uri) is None
                )
            ),
        ),
        Rule(
            cel=f"!self.uri.matches('{OBJECT_SCHEME_PATTERN}') || "
            f"self.uri.matches('{OBJECT_URI_PATTERN}')",
            message="an s3:// or gs:// model is <scheme>://<bucket>/<key>, or "
            "<scheme>://<bucket>/<prefix>/ for a directory: a bucket name of 3 to 222 lowercase "
            "letters, digits, '.', '_' and '-', and no query or fragment",
            field_path=".uri",
            check=lambda m: (
                not _object_store(m.uri) or re.search(OBJECT_URI_PATTERN, m.uri) is not None
            ),
        ),
        Rule(
            cel=f"!has(self.endpoint) || self.uri.matches('{OBJECT_SCHEME_PATTERN}')",
            message="endpoint applies to s3:// and gs:// models only",
            field_path=".endpoint",
            check=lambda m: m.endpoint is None or _object_store(m.uri),
        ),
        Rule(
            cel=f"!has(self.credentialsSecret) || self.uri.matches('{OBJECT_SCHEME_PATTERN}')",
            message="credentialsSecret applies to s3:// and gs:// models only",
            field_path=".credentialsSecret",
            check=lambda m: m.credentials_secret is None or _object_store(m.uri),
        ),
    )

    uri: str = Field(
        max_length=2048,
        pattern=r"^(s3|gs|https|pvc)://.+",
        description="Where the model is: https://, pvc://<claim>/<path>, or in object storage "
        "s3://<bucket>/<key> (one object) or s3://<bucket>/<prefix>/ (a directory: every file "
        f"its {MODEL_MANIFEST} lists, each checked against the size and SHA-256 there). gs:// "
        "is the same through Google Cloud Storage's S3-compatible API, with HMAC keys.",
    )
    sha256: str | None = Field(
        default=None,
        pattern=r"^[a-f0-9]{64}$",
        description="Expected SHA-256 of the model file, or for an s3:// or gs:// directory of "
        f"its {MODEL_MANIFEST}; a mismatch fails staging.",
    )
    endpoint: Endpoint | None = Field(
        default=None,
        description=endpoint_description(f"AWS S3 when absent for s3://, {GCS_ENDPOINT} for gs://"),
    )
    credentials_secret: SecretName | None = Field(
        default=None,
        description=credentials_description(
            "The model-staging init container",
            "Without it, boto3's default chain applies (for example IRSA on EKS, with a "
            "ServiceAccount the admin allows).",
        ),
    )
    ca_config_map: str | None = Field(
        default=None,
        pattern=DNS_SUBDOMAIN_PATTERN,
        max_length=253,
        description="A ConfigMap in the same namespace whose key ca.crt holds the PEM CA "
        "certificates an https:// model server's certificate must chain to (a private CA). "
        "Staging then trusts only these, instead of the staging image's public CAs. It is "
        "mounted into the staging init container only.",
    )
    size_limit: str | None = Field(
        default=None,
        pattern=SIZE_PATTERN,
        max_length=16,
        description="The most disk the model may take, as a quantity such as 20Gi (default "
        f"{DEFAULT_MODEL_SIZE_LIMIT}): staging aborts a download past it, and the pod's model "
        "volume (an emptyDir) gets it as its sizeLimit.",
    )


class ReplicaRange(ApiModel):
    """Bounds on the number of replicas of the stable revision."""

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="!has(self.min) || !has(self.max) || self.max >= self.min",
            message="max must be at least min",
            field_path=".max",
            check=lambda r: r.max >= r.min,
        ),
        # Scale to zero is refused with every kind of autoscaling: the operator waits for at
        # least one ready replica of the stable revision, so a service at zero would stay
        # Progressing forever.
        Rule(
            cel="!has(self.min) || self.min >= 1",
            message="min 0 (scale to zero) is not supported yet; use min >= 1",
            field_path=".min",
            check=lambda r: r.min >= 1,
        ),
    )

    min: int = Field(
        default=1,
        ge=0,
        le=1000,
        description="Fewest replicas: at least 1. Scale to zero (0) is not supported yet, with "
        "any autoscaling metric, and is refused.",
    )
    max: int = Field(default=1, ge=1, le=1000, description="Most replicas.")


class Autoscaling(ApiModel):
    """What scales the replicas between min and max."""

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="(self.metric == 'prometheus') == has(self.query)",
            message="query is required with metric prometheus, and only then",
            field_path=".query",
            check=lambda a: (a.metric == "prometheus") == (a.query is not None),
        ),
        Rule(
            cel="self.metric == 'prometheus' || (type(self.target) == int "
            "? self.target >= 1 && self.target <= 100 "
            f": self.target.matches('{PERCENT_PATTERN}') "
            "&& int(self.target) >= 1 && int(self.target) <= 100)",
            message="with metric cpu or memory, target is a utilization percentage: a whole "
            "number from 1 to 100",
            field_path=".target",
            check=lambda a: a.metric == "prometheus" or _percentage(a.target),
        ),
        Rule(
            cel="self.metric != 'prometheus' || (type(self.target) == int ? self.target > 0 "
            f": self.target.matches('{NUMBER_PATTERN}') && double(self.target) > 0.0)",
            message="with metric prometheus, target is the query's value per replica: a number "
            "above 0 such as 10 or 0.5, without a unit suffix",
            field_path=".target",
            check=lambda a: a.metric != "prometheus" or _positive_number(a.target),
        ),
    )

    metric: Literal["cpu", "memory", "prometheus"] = Field(
        default="cpu",
        description="cpu or memory (average utilization, through an HPA), or prometheus (a "
        "query's value, through KEDA).",
    )
    target: Quantity = Field(
        description="Target per replica. For cpu and memory the average utilization in percent, "
        'a whole number from 1 to 100 (70 or "70"). For prometheus the query\'s value, a '
        'number above 0 (10, 0.5 or "0.5"; no unit suffix: KEDA reads the threshold as a '
        "plain number)."
    )
    query: str | None = Field(
        default=None, min_length=1, max_length=4096, description="PromQL, with metric prometheus."
    )


class Pause(ApiModel):
    """A hold at a step; without a duration it waits for `stratus promote`."""

    duration: Duration | None = Field(default=None, description="How long to hold, e.g. 10m.")


class Step(ApiModel):
    """One step of a canary: the canary's share of traffic, held for a pause."""

    weight: int = Field(ge=1, le=100, description="Canary's share of traffic, in percent.")
    pause: Pause | None = Field(
        default=None, description="Hold at this weight. Absent: hold for one analysis interval."
    )


class AnalysisMetric(ApiModel):
    """A PromQL query whose value must stay within bounds while the canary runs."""

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="has(self.min) || has(self.max)",
            message="set min, max or both",
            field_path=".max",
            check=lambda m: m.min is not None or m.max is not None,
        ),
        Rule(
            cel="!has(self.min) || !has(self.max) || self.min <= self.max",
            message="min must not exceed max",
            field_path=".min",
            check=lambda m: m.min is None or m.max is None or m.min <= m.max,
        ),
    )

    name: str = Field(pattern=DNS_LABEL_PATTERN, max_length=63, description="Metric name.")
    query: str = Field(
        min_length=1,
        max_length=4096,
        description="PromQL returning one number. {{name}}, {{namespace}}, {{canary}} and "
        "{{stable}} are replaced by the service's name, namespace and revisions.",
    )
    min: float | None = Field(default=None, description="Lowest passing value.")
    max: float | None = Field(default=None, description="Highest passing value.")


class Analysis(ApiModel):
    """How the canary is judged."""

    rules: ClassVar[tuple[Rule, ...]] = (
        min_duration_rule("interval", MIN_ANALYSIS_INTERVAL, lambda a: a.interval),
    )

    interval: Duration = Field(
        default="1m",
        description=f"How often the metrics are queried; at least {MIN_ANALYSIS_INTERVAL}.",
    )
    failure_limit: int = Field(
        default=0,
        ge=0,
        le=100,
        description="Failed measurements tolerated; one more rolls the canary back.",
    )
    inconclusive_limit: int = Field(
        default=0,
        ge=0,
        le=100,
        description="Empty or NaN measurements tolerated; one more pauses for a human.",
    )
    prometheus_address: str | None = Field(
        default=None,
        pattern=r"^https?://",
        max_length=2048,
        description="Prometheus to query: one of the addresses the cluster admin gave the "
        "operator (compared as scheme, host, port and path), its default when absent. Any other "
        "is refused: Healthy=False, reason PrometheusAddressNotAllowed, and nothing is "
        "reconciled until it is fixed.",
    )
    metrics: list[AnalysisMetric] = Field(
        default_factory=list,
        max_length=16,
        description="Metrics that must hold.",
        json_schema_extra=METRICS_LIST,
    )

    @field_validator("metrics")
    @classmethod
    def _unique(cls, metrics: list[AnalysisMetric]) -> list[AnalysisMetric]:
        names = [m.name for m in metrics]
        if len(set(names)) != len(names):
            raise ValueError("metric names must be unique")
        return metrics


class HttpRouteRef(ApiModel):
    """A Gateway API HTTPRoute whose backend weights carry the split."""

    name: str = Field(max_length=253, description="HTTPRoute name, in the same namespace.")


class TrafficRouting(ApiModel):
    """How traffic is split. Without httpRoute: by replica ratio behind the one Service."""

    http_route: HttpRouteRef | None = Field(default=None, description=HttpRouteRef.__doc__)


class Rollout(ApiModel):
    """How a new revision replaces the stable one."""

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="!has(self.steps) || "
            "self.steps.all(i, s, i == 0 || self.steps[i - 1].weight < s.weight)",
            message="step weights must rise from step to step",
            field_path=".steps",
            check=lambda r: all(
                a.weight < b.weight for a, b in zip(r.steps, r.steps[1:], strict=False)
            ),
        ),
        Rule(
            cel="!has(self.steps) || self.steps.size() == 0 || "
            "self.steps[self.steps.size() - 1].weight == 100",
            message="the last step's weight must be 100",
            field_path=".steps",
            check=lambda r: not r.steps or r.steps[-1].weight == 100,
        ),
        Rule(
            cel="!has(self.strategy) || self.strategy == 'Canary' || !has(self.steps) || "
            "self.steps.size() == 0",
            message="steps apply to the Canary strategy only",
            field_path=".steps",
            check=lambda r: r.strategy == "Canary" or not r.steps,
        ),
        min_duration_rule("progressDeadline", MIN_PROGRESS_DEADLINE, lambda r: r.progress_deadline),
    )

    strategy: Literal["Canary", "Recreate"] = Field(
        default="Canary", description="Canary (stepwise, judged) or Recreate (replace at once)."
    )
    steps: list[Step] = Field(
        default_factory=list,
        max_length=MAX_STEPS,
        description="Canary steps; weights rise and end at 100. None: promote once ready.",
    )
    analysis: Analysis = Field(
        default_factory=Analysis, description=Analysis.__doc__, json_schema_extra=DEFAULTED
    )
    traffic_routing: TrafficRouting = Field(
        default_factory=TrafficRouting,
        description=TrafficRouting.__doc__,
        json_schema_extra=DEFAULTED,
    )
    validation: Validation | None = Field(default=None, description=Validation.__doc__)
    capacity: Literal["Keep", "Reduce"] = Field(
        default="Keep",
        description="What a replica-ratio canary does to the stable revision's size. Keep: the "
        "stable is scaled down only as canary pods become ready, so ready stable plus ready "
        "canary replicas never drop below the stable's size before the canary; it costs as many "
        "extra replicas (GPUs) as canary pods are starting at once: at most a step's increase in "
        "canary replicas, the whole size at a single 100% step. Reduce: the stable is scaled "
        "down as soon as a step begins, so no extra replicas are needed (for clusters with few "
        "GPUs), and serving capacity dips until the canary's pods are ready. With an HTTPRoute "
        "the stable keeps its full size either way; with autoscaling the autoscaler alone sizes "
        "the stable and the canary runs beside it.",
    )
    progress_deadline: Duration = Field(
        default="10m",
        description="How long a canary's pods have to become ready, from the start of each "
        f"step (or from when one of them stops being ready); at least {MIN_PROGRESS_DEADLINE}. "
        "Past it the canary is rolled back (phase Degraded, reason ProgressDeadlineExceeded) "
        "and the stable returns to full size.",
    )


class InferenceServiceSpec(Workload):
    """The desired model server."""

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="!has(self.schedule) || !has(self.schedule.replicas) || "
            "self.schedule.replicas < (has(self.replicas) && has(self.replicas.min) "
            "? self.replicas.min : 1)",
            message="the off-hours floor must be below replicas.min",
            field_path=".schedule.replicas",
            check=lambda s: s.schedule is None or s.schedule.replicas < s.replicas.min,
        ),
    )

    model: ModelSource = Field(description=ModelSource.__doc__)
    port: int = Field(default=8080, ge=1, le=65535, description="Port the server listens on.")
    readiness_path: str = Field(
        default="/healthz",
        pattern=r"^/",
        max_length=1024,
        description="HTTP path of the readiness and liveness probes.",
    )
    resources: GpuResources = Field(
        default_factory=GpuResources,
        description="Resources of each replica.",
        json_schema_extra=DEFAULTED,
    )
    replicas: ReplicaRange = Field(
        default_factory=ReplicaRange, description=ReplicaRange.__doc__, json_schema_extra=DEFAULTED
    )
    autoscaling: Autoscaling | None = Field(default=None, description=Autoscaling.__doc__)
    rollout: Rollout = Field(
        default_factory=Rollout, description=Rollout.__doc__, json_schema_extra=DEFAULTED
    )
    schedule: ServingSchedule | None = Field(default=None, description=ServingSchedule.__doc__)
    idle: Idle | None = Field(default=None, description=Idle.__doc__)


# Held at zero by off-hours or idle reclamation: not serving, on purpose.
InferenceServicePhase = Literal[
    "Pending", "Progressing", "Paused", "Healthy", "Degraded", "ScaledDown"
]


class MetricResult(ApiModel):
    """One analysis metric's latest measurement."""

    name: str = Field(description="Metric name.")
    value: float | None = Field(default=None, description="Measured value; absent if empty.")
    verdict: Literal["Passed", "Failed", "Inconclusive"] = Field(description="Judgement.")


class AnalysisRecord(ApiModel):
    """The latest analysis run."""

    time: str | None = Field(default=None, description="When it ran (RFC 3339).")
    results: list[MetricResult] = Field(default_factory=list, description="Per metric.")
    failures: int = Field(default=0, description="Failed measurements in this step so far.")
    inconclusive: int = Field(default=0, description="Inconclusive measurements so far.")


class ComparatorResult(ApiModel):
    """One comparator's figures in one source of requests."""

    name: str = Field(description="Comparator.")
    source: Literal["replay", "shadow"] = Field(description="Where the requests came from.")
    samples: int = Field(default=0, description="Samples compared with the baseline.")
    agreement: float | None = Field(default=None, description="Share that agreed.")
    noise_floor: float | None = Field(
        default=None, description="The baseline's disagreement with itself."
    )
    adjusted: float | None = Field(
        default=None, description="Agreement beyond the noise floor: what is judged."
    )
    verdict: Literal["Pending", "Passed", "Failed"] = Field(description="Judgement.")


class ValidationRecord(ApiModel):
    """The validation stage of the latest candidate: its figures, and a few disagreements
    (only the compared fields, bounded)."""

    revision: str | None = Field(default=None, description="The candidate revision.")
    phase: Literal["Running", "Passed", "Failed"] | None = Field(default=None, description="")
    started_at: str | None = Field(default=None, description="When the stage began (RFC 3339).")
    reason: str | None = Field(default=None, description="Why it passed or failed.")
    results: list[ComparatorResult] = Field(default_factory=list, description="Per comparator.")
    requests: dict[str, int] = Field(
        default_factory=dict, description="Requests compared, by source (replay, shadow)."
    )
    shadow_overhead_ms: dict[str, float] = Field(
        default_factory=dict, description="Latency the shadow proxy added (p50, p99), in ms."
    )
    examples: list[dict[str, Any]] = Field(
        default_factory=list, description="A few disagreements: the compared fields only."
    )


class InferenceServiceStatus(ApiModel):
    """What the operator observed. Written by the operator only."""

    phase: InferenceServicePhase | None = Field(default=None, description="Summary for humans.")
    stable_revision: str | None = Field(default=None, description="Revision serving by default.")
    canary_revision: str | None = Field(default=None, description="Revision being judged.")
    canary_weight: int | None = Field(
        default=None, description="Canary's traffic share (%) asked for by the current step."
    )
    canary_weight_achieved: int | None = Field(
        default=None,
        description="Canary's traffic share (%) achieved now: its share of the ready replicas "
        "(by replica ratio), or the route's weight once a canary pod is ready (HTTPRoute).",
    )
    canary_unready_since: str | None = Field(
        default=None,
        description="Since when the canary has had fewer ready pods than its step needs "
        "(RFC 3339); absent while it has them all. Rolled back at rollout.progressDeadline.",
    )
    current_step: int | None = Field(default=None, description="Index of the current step.")
    ready_replicas: int | None = Field(default=None, description="Ready replicas, all revisions.")
    url: str | None = Field(default=None, description="In-cluster address of the service.")
    last_analysis: AnalysisRecord | None = Field(default=None, description=AnalysisRecord.__doc__)
    validation: ValidationRecord | None = Field(default=None, description=ValidationRecord.__doc__)
    message: str | None = Field(default=None, description="Latest notable event, for humans.")
    step_started_at: str | None = Field(
        default=None, description="When the current canary step began (RFC 3339)."
    )
    step_in_place_at: str | None = Field(
        default=None,
        description="When the current step's split first stood, every canary pod it needs "
        "ready (RFC 3339): its pause counts from then.",
    )
    aborted_revision: str | None = Field(
        default=None, description="Revision rolled back; not tried again until retried."
    )
    retiring_revision: str | None = Field(
        default=None, description="The previous stable revision, deleted at retireAt."
    )
    retire_at: str | None = Field(
        default=None, description="When the previous stable revision is deleted (RFC 3339)."
    )
    handled_commands: dict[str, str] = Field(
        default_factory=dict,
        description="The last value of each command annotation acted upon.",
    )
    usage: Usage | None = Field(default=None, description=Usage.__doc__)
    schedule: ScheduleStatus | None = Field(default=None, description=ScheduleStatus.__doc__)
    observed_generation: int | None = Field(
        default=None, description="The spec generation this status reflects."
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Conditions: Ready, and what the operator is doing.",
        json_schema_extra=CONDITIONS_LIST,
    )
