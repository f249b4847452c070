"""TrainingJob: a GPU training run that survives spot preemption by checkpointing and resuming."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, field_validator
from pydantic.config import JsonDict

from stratus.api.common import (
    BUCKET_PATTERN,
    CONDITIONS_LIST,
    DEFAULTED,
    DNS_SUBDOMAIN_PATTERN,
    LABEL_VALUE_PATTERN,
    ApiModel,
    Condition,
    Endpoint,
    GpuResources,
    Rule,
    SecretName,
    Workload,
    credentials_description,
    endpoint_description,
)
from stratus.api.schedule import TrainingSchedule
from stratus.api.usage import Usage

KIND = "TrainingJob"
PLURAL = "trainingjobs"
# `<name>-<attempt>` must stay a valid Job name, and its pods' hostnames DNS labels.
MAX_NAME_LENGTH = 48
SET_LIST: JsonDict = {"x-kubernetes-list-type": "set"}
# s3://<bucket>/<prefix>: the one object store the SDK writes to (GCS and others through their
# S3-compatible APIs). No query or fragment: the URI is a location, never a presigned request.
CHECKPOINT_URI_PATTERN = f"^s3://{BUCKET_PATTERN}(/[^?#]*)?$"


class SpotPolicy(ApiModel):
    """Whether the workers run on spot capacity, and how many preemptions the run survives."""

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="!has(self.fallbackToOnDemandAfter) || "
            "self.fallbackToOnDemandAfter <= self.maxPreemptions",
            message="fallbackToOnDemandAfter must not exceed maxPreemptions",
            field_path=".fallbackToOnDemandAfter",
            check=lambda s: (
                s.fallback_to_on_demand_after is None
                or s.fallback_to_on_demand_after <= s.max_preemptions
            ),
        ),
    )

    enabled: bool = Field(
        default=False, description="Run on spot nodes (tolerating their taint, requiring them)."
    )
    max_preemptions: int = Field(
        default=20,
        ge=0,
        le=1000,
        description="Preemptions survived; one more fails the TrainingJob (reason "
        "PreemptionLimitExceeded).",
    )
    fallback_to_on_demand_after: int | None = Field(
        default=None,
        ge=0,
        le=1000,
        description="After this many preemptions, later attempts run on on-demand nodes.",
    )


class CheckpointSpec(ApiModel):
    """Where checkpoints live. The program writes them under `mountPath` (STRATUS_CHECKPOINT_DIR):
    a PersistentVolumeClaim, or with an s3:// `uri` a scratch directory that the SDK uploads
    from (STRATUS_CHECKPOINT_URI, with the store's endpoint and credentials). Every attempt after
    a checkpoint was reported gets STRATUS_RESUME_FROM: its path on the claim, or its URI."""

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="!(has(self.persistentVolumeClaim) && has(self.uri))",
            message="set persistentVolumeClaim or uri, not both",
            field_path=".uri",
            check=lambda c: not (c.persistent_volume_claim and c.uri),
        ),
        Rule(
            cel="!has(self.endpoint) || has(self.uri)",
            message="endpoint applies to an s3:// uri only",
            field_path=".endpoint",
            check=lambda c: c.endpoint is None or c.uri is not None,
        ),
        Rule(
            cel="!has(self.credentialsSecret) || has(self.uri)",
            message="credentialsSecret applies to an s3:// uri only",
            field_path=".credentialsSecret",
            check=lambda c: c.credentials_secret is None or c.uri is not None,
        ),
    )

    persistent_volume_claim: str | None = Field(
        default=None,
        max_length=253,
        pattern=DNS_SUBDOMAIN_PATTERN,
        description="Name of a PersistentVolumeClaim in the same namespace to keep checkpoints.",
    )
    uri: str | None = Field(
        default=None,
        max_length=2048,
        pattern=CHECKPOINT_URI_PATTERN,
        description="Object-storage prefix for checkpoints, s3://<bucket>/<prefix>: on AWS S3, "
        "or on any S3-compatible store (Google Cloud Storage with HMAC keys, SeaweedFS, Ceph, "
        "...) named by `endpoint`. Passed to the program as STRATUS_CHECKPOINT_URI; the SDK "
        "writes each checkpoint locally under mountPath (a scratch emptyDir) and uploads it "
        "there.",
    )
    endpoint: Endpoint | None = Field(
        default=None, description=endpoint_description("AWS S3 when absent")
    )
    credentials_secret: SecretName | None = Field(
        default=None,
        description=credentials_description(
            "Every worker",
            "Without it the program must find keys itself (its own env or envFrom): the "
            "Stratus SDK signs with AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and "
            "AWS_SESSION_TOKEN from the environment, not with a cloud identity.",
        ),
    )
    mount_path: str = Field(
        default="/checkpoints",
        pattern=r"^/",
        max_length=4096,
        description="Where the checkpoint location is mounted in the container.",
    )


class RetryPolicy(ApiModel):
    """How application failures (not preemptions) are retried: each failed attempt is followed
    by a backoff that doubles from `backoffSeconds` up to `maxBackoffSeconds`."""

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            # The API server also checks the rules against the schema's default ({}), which
            # names neither field.
            cel="!has(self.backoffSeconds) || !has(self.maxBackoffSeconds) "
            "|| self.backoffSeconds <= self.maxBackoffSeconds",
            message="backoffSeconds must not exceed maxBackoffSeconds",
            field_path=".backoffSeconds",
            check=lambda r: r.backoff_seconds <= r.max_backoff_seconds,
        ),
    )

    max_restarts: int = Field(
        default=3,
        ge=0,
        le=1000,
        description="Failed attempts retried; one more fails the TrainingJob.",
    )
    retryable_exit_codes: list[Annotated[int, Field(ge=1, le=255)]] = Field(
        default_factory=list,
        max_length=64,
        description="Exit codes that restart the attempt without counting against "
        "maxRestarts (for example a NCCL timeout); they count against maxRetryableRestarts.",
        json_schema_extra=SET_LIST,
    )
    max_retryable_restarts: int = Field(
        default=10,
        ge=0,
        le=1000,
        description="Attempts ended by a retryable exit code that are retried; one more fails "
        "the TrainingJob (reason RetryableRestartLimitExceeded).",
    )
    backoff_seconds: int = Field(
        default=10,
        ge=0,
        le=3600,
        description="Wait before the attempt after the first failed one; it doubles with each "
        "further failure (retryable or not). Preemptions restart at once.",
    )
    max_backoff_seconds: int = Field(
        default=300,
        ge=0,
        le=86400,
        description="The longest wait between a failed attempt and the next.",
    )

    @field_validator("retryable_exit_codes")
    @classmethod
    def _unique(cls, codes: list[int]) -> list[int]:
        if len(set(codes)) != len(codes):
            raise ValueError("exit codes must be unique")
        return codes


class TrainingJobSpec(Workload):
    """The desired training run."""

    workers: int = Field(
        default=1,
        ge=1,
        le=1024,
        description="Worker pods; more than one makes a distributed (torchrun-style) job.",
    )
    resources: GpuResources = Field(
        default_factory=GpuResources,
        description="Resources of each worker.",
        json_schema_extra=DEFAULTED,
    )
    spot: SpotPolicy = Field(
        default_factory=SpotPolicy, description=SpotPolicy.__doc__, json_schema_extra=DEFAULTED
    )
    checkpoint: CheckpointSpec | None = Field(default=None, description=CheckpointSpec.__doc__)
    retry: RetryPolicy = Field(
        default_factory=RetryPolicy, description=RetryPolicy.__doc__, json_schema_extra=DEFAULTED
    )
    termination_grace_period_seconds: int = Field(
        default=120,
        ge=0,
        le=3600,
        description="Time a worker gets after SIGTERM to save a checkpoint (cover the cloud's "
        "spot notice: 120s on AWS, 30s on GCP and Azure).",
    )
    active_deadline_seconds: int | None = Field(
        default=None, ge=1, description="Bound on the whole run, across attempts."
    )
    ttl_seconds_after_finished: int | None = Field(
        default=None, ge=0, description="Delete the TrainingJob this long after it finishes."
    )
    suspend: bool = Field(
        default=False,
        description="End the active attempt without counting it; resuming starts the next "
        "attempt from the latest checkpoint.",
    )
    schedule: TrainingSchedule | None = Field(default=None, description=TrainingSchedule.__doc__)
    priority_class_name: str | None = Field(
        default=None, max_length=253, description="PriorityClass of every attempt's pods."
    )
    queue_name: str | None = Field(
        default=None,
        max_length=63,
        pattern=LABEL_VALUE_PATTERN,
        description="Kueue LocalQueue; set as kueue.x-k8s.io/queue-name on every attempt.",
    )

    @property
    def checkpoint_uri(self) -> str | None:
        """The object-storage prefix checkpoints go to, if any."""
        return self.checkpoint.uri if self.checkpoint else None


# Waiting: a gate (a budget, a start window) holds the next attempt; Queued: Kueue holds its Job.
TrainingJobPhase = Literal[
    "Pending", "Waiting", "Queued", "Running", "Restarting", "Succeeded", "Failed", "Suspended"
]


class CheckpointRecord(ApiModel):
    """A checkpoint a worker reported through its termination message."""

    path: str = Field(
        description="Where the checkpoint is: its s3:// URI with an object-storage uri, else "
        "its path in the container, as the program reported it."
    )
    step: int | None = Field(default=None, description="Training step it holds.")
    sha256: str | None = Field(default=None, description="Digest of its manifest.")
    time: str | None = Field(default=None, description="When it was reported (RFC 3339).")


class TrainingJobStatus(ApiModel):
    """What the operator observed. Written by the operator only."""

    phase: TrainingJobPhase | None = Field(default=None, description="Summary for humans.")
    attempt: int | None = Field(default=None, description="Number of the current attempt.")
    preemptions: int | None = Field(default=None, description="Attempts ended by preemption.")
    restarts: int | None = Field(
        default=None, description="Attempts ended by a counted application failure."
    )
    retryable_restarts: int | None = Field(
        default=None, description="Attempts ended by a retryable exit code."
    )
    next_attempt_at: str | None = Field(
        default=None,
        description="When the next attempt starts, while it waits out the backoff after a "
        "failed attempt (RFC 3339).",
    )
    active_job: str | None = Field(default=None, description="Job running the current attempt.")
    last_checkpoint: CheckpointRecord | None = Field(
        default=None, description="Latest checkpoint reported."
    )
    start_time: str | None = Field(default=None, description="When the first attempt started.")
    completion_time: str | None = Field(default=None, description="When the run finished.")
    gpu_seconds: int | None = Field(
        default=None,
        description="GPU time across ended attempts: from when each worker's containers "
        "started running to when they stopped, times its GPUs.",
    )
    message: str | None = Field(default=None, description="Latest notable event, for humans.")
    usage: Usage | None = Field(default=None, description=Usage.__doc__)
    observed_generation: int | None = Field(
        default=None, description="The spec generation this status reflects."
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Conditions: Ready, and what the operator is doing.",
        json_schema_extra=CONDITIONS_LIST,
    )
