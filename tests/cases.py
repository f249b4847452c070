"""Shared test objects: the examples, and invalid variants of them, each with the field path that
its rejection must name. The unit tests hold the models to them, the end-to-end tests the API
server, so both refuse the same mistakes in the same words."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
DELETE = object()


def resources_in(path: Path) -> list[dict[str, Any]]:
    """The TrainingJobs and InferenceServices of an example file, without what it ships beside
    them (a PriorityClass, a claim)."""
    docs = yaml.safe_load_all(path.read_text())
    return [d for d in docs if d and d["apiVersion"].startswith("stratus.dev/")]


def example(file_name: str) -> dict[str, Any]:
    (loaded,) = resources_in(EXAMPLES / file_name)
    return loaded


def all_examples() -> list[dict[str, Any]]:
    return [d for p in sorted(EXAMPLES.glob("*.yaml")) for d in resources_in(p)]


def with_change(obj: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of `obj` with the dotted `path` set to `value` (or removed, for DELETE)."""
    out = copy.deepcopy(obj)
    *parents, leaf = path.split(".")
    node = out
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
    if value is DELETE:
        del node[leaf]
    else:
        node[leaf] = value
    return out


@dataclass(frozen=True)
class Invalid:
    id: str
    base: str
    changes: tuple[tuple[str, Any], ...]
    field: str

    def build(self) -> dict[str, Any]:
        obj = copy.deepcopy(INLINE[self.base]) if self.base in INLINE else example(self.base)
        for path, value in self.changes:
            obj = with_change(obj, path, value)
        return obj


TJ = "trainingjob-spot.yaml"
# Objects with no example file of their own: the admin's Budget (cluster-scoped).
BUDGET = "budget"
INLINE: dict[str, dict[str, Any]] = {
    BUDGET: {
        "apiVersion": "stratus.dev/v1alpha1",
        "kind": "Budget",
        "metadata": {"name": "nlp-monthly"},
        "spec": {
            "teams": ["nlp"],
            "namespaces": ["research"],
            "window": {"type": "CalendarMonth", "timeZone": "Europe/Berlin"},
            "limit": {"gpuHours": 500},
            "softThreshold": 80,
            "action": "Block",
        },
    }
}
INFS = "inferenceservice-canary.yaml"
METRIC = {"name": "m", "query": "up"}
OFF_HOURS = {"days": ["Mon"], "start": "20:00", "end": "07:00"}

INVALID = (
    Invalid("tj-no-image", TJ, (("spec.image", DELETE),), "spec.image"),
    Invalid("tj-empty-image", TJ, (("spec.image", ""),), "spec.image"),
    Invalid("tj-zero-workers", TJ, (("spec.workers", 0),), "spec.workers"),
    Invalid("tj-workers-as-string", TJ, (("spec.workers", "4"),), "spec.workers"),
    Invalid("tj-negative-gpu", TJ, (("spec.resources.gpu", -1),), "spec.resources.gpu"),
    Invalid("tj-too-many-gpus", TJ, (("spec.resources.gpu", 65),), "spec.resources.gpu"),
    Invalid("tj-gpu-type-without-gpu", TJ, (("spec.resources.gpu", 0),), "spec.resources.gpuType"),
    Invalid("tj-bad-cpu", TJ, (("spec.resources.cpu", "lots"),), "spec.resources.cpu"),
    Invalid("tj-negative-memory", TJ, (("spec.resources.memory", -1),), "spec.resources.memory"),
    Invalid(
        "tj-fallback-past-max",
        TJ,
        (("spec.spot.fallbackToOnDemandAfter", 30),),
        "spec.spot.fallbackToOnDemandAfter",
    ),
    Invalid(
        "tj-negative-max-preemptions",
        TJ,
        (("spec.spot.maxPreemptions", -1),),
        "spec.spot.maxPreemptions",
    ),
    Invalid(
        "tj-checkpoint-pvc-and-uri",
        TJ,
        (("spec.checkpoint.persistentVolumeClaim", "ckpt"),),
        "spec.checkpoint.uri",
    ),
    Invalid(
        "tj-checkpoint-ftp", TJ, (("spec.checkpoint.uri", "ftp://host/x"),), "spec.checkpoint.uri"
    ),
    Invalid(
        "tj-relative-mount",
        TJ,
        (("spec.checkpoint.mountPath", "ckpt"),),
        "spec.checkpoint.mountPath",
    ),
    Invalid(
        "tj-exit-code-zero",
        TJ,
        (("spec.retry.retryableExitCodes", [0]),),
        "spec.retry.retryableExitCodes[0]",
    ),
    Invalid(
        "tj-duplicate-exit-codes",
        TJ,
        (("spec.retry.retryableExitCodes", [75, 75]),),
        "spec.retry.retryableExitCodes",
    ),
    Invalid("tj-team-not-a-label", TJ, (("spec.team", "NLP team"),), "spec.team"),
    Invalid("tj-unknown-field", TJ, (("spec.gpus", 2),), "spec.gpus"),
    Invalid("tj-name-too-long", TJ, (("metadata.name", "x" * 49),), "metadata.name"),
    Invalid("tj-env-without-name", TJ, (("spec.env", [{"value": "1"}]),), "spec.env[0].name"),
    Invalid(
        "tj-grace-too-long",
        TJ,
        (("spec.terminationGracePeriodSeconds", 99999),),
        "spec.terminationGracePeriodSeconds",
    ),
    Invalid(
        "tj-pod-bound-to-a-node",
        TJ,
        (("spec.podTemplate", {"spec": {"nodeName": "gpu-spot-1"}}),),
        "spec.podTemplate.spec.nodeName",
    ),
    Invalid(
        "infs-pod-bound-to-a-node",
        INFS,
        (("spec.podTemplate", {"spec": {"nodeName": "real-0"}}),),
        "spec.podTemplate.spec.nodeName",
    ),
    Invalid("infs-no-model", INFS, (("spec.model", DELETE),), "spec.model"),
    Invalid("infs-model-ftp", INFS, (("spec.model.uri", "ftp://host/m"),), "spec.model.uri"),
    Invalid("infs-bad-sha", INFS, (("spec.model.sha256", "abc"),), "spec.model.sha256"),
    Invalid(
        "infs-ca-config-map-bad-name",
        INFS,
        (("spec.model.caConfigMap", "Model_CA"),),
        "spec.model.caConfigMap",
    ),
    Invalid(
        "infs-ca-config-map-not-https",
        INFS,
        (("spec.model.uri", "pvc://models/m"), ("spec.model.caConfigMap", "model-ca")),
        "spec.model.caConfigMap",
    ),
    Invalid(
        "infs-max-below-min",
        INFS,
        (("spec.replicas.min", 5), ("spec.replicas.max", 2)),
        "spec.replicas.max",
    ),
    Invalid("infs-port-range", INFS, (("spec.port", 70000),), "spec.port"),
    Invalid(
        "infs-weights-fall",
        INFS,
        (("spec.rollout.steps", [{"weight": 50}, {"weight": 10}, {"weight": 100}]),),
        "spec.rollout.steps",
    ),
    Invalid(
        "infs-last-weight-not-100",
        INFS,
        (("spec.rollout.steps", [{"weight": 10}, {"weight": 50}]),),
        "spec.rollout.steps",
    ),
    Invalid(
        "infs-zero-weight",
        INFS,
        (("spec.rollout.steps", [{"weight": 0}, {"weight": 100}]),),
        "spec.rollout.steps[0].weight",
    ),
    Invalid(
        "infs-bad-pause",
        INFS,
        (("spec.rollout.steps", [{"weight": 100, "pause": {"duration": "5 minutes"}}]),),
        "spec.rollout.steps[0].pause.duration",
    ),
    Invalid(
        "infs-unknown-strategy",
        INFS,
        (("spec.rollout.strategy", "BlueGreen"),),
        "spec.rollout.strategy",
    ),
    Invalid(
        "infs-recreate-with-steps",
        INFS,
        (("spec.rollout.strategy", "Recreate"),),
        "spec.rollout.steps",
    ),
    Invalid(
        "infs-metric-without-bounds",
        INFS,
        (("spec.rollout.analysis.metrics", [METRIC]),),
        "spec.rollout.analysis.metrics[0].max",
    ),
    Invalid(
        "infs-metric-min-above-max",
        INFS,
        (("spec.rollout.analysis.metrics", [{**METRIC, "min": 2, "max": 1}]),),
        "spec.rollout.analysis.metrics[0].min",
    ),
    Invalid(
        "infs-duplicate-metrics",
        INFS,
        (("spec.rollout.analysis.metrics", [{**METRIC, "max": 1}, {**METRIC, "max": 2}]),),
        "spec.rollout.analysis.metrics",
    ),
    Invalid(
        "infs-prometheus-without-query",
        INFS,
        (("spec.autoscaling", {"metric": "prometheus", "target": 10}),),
        "spec.autoscaling.query",
    ),
    Invalid(
        "infs-bad-interval",
        INFS,
        (("spec.rollout.analysis.interval", "often"),),
        "spec.rollout.analysis.interval",
    ),
    # Names that are fine resource names but not Service names (DNS-1035 labels).
    Invalid("infs-name-starts-with-digit", INFS, (("metadata.name", "1web"),), "metadata.name"),
    Invalid("infs-name-with-dot", INFS, (("metadata.name", "web.v2"),), "metadata.name"),
    Invalid("tj-name-with-dot", TJ, (("metadata.name", "train.v2"),), "metadata.name"),
    Invalid(
        "infs-cpu-target-fraction",
        INFS,
        (("spec.autoscaling", {"metric": "cpu", "target": "0.5"}),),
        "spec.autoscaling.target",
    ),
    Invalid(
        "infs-memory-target-over-100",
        INFS,
        (("spec.autoscaling", {"metric": "memory", "target": 150}),),
        "spec.autoscaling.target",
    ),
    Invalid(
        "infs-cpu-target-zero",
        INFS,
        (("spec.autoscaling", {"metric": "cpu", "target": 0}),),
        "spec.autoscaling.target",
    ),
    Invalid(
        "infs-prometheus-target-with-unit",
        INFS,
        (("spec.autoscaling", {"metric": "prometheus", "query": "up", "target": "500m"}),),
        "spec.autoscaling.target",
    ),
    Invalid(
        "infs-prometheus-target-zero",
        INFS,
        (("spec.autoscaling", {"metric": "prometheus", "query": "up", "target": "0.0"}),),
        "spec.autoscaling.target",
    ),
    Invalid(
        "infs-zero-interval",
        INFS,
        (("spec.rollout.analysis.interval", "0s"),),
        "spec.rollout.analysis.interval",
    ),
    Invalid(
        "infs-sub-second-interval",
        INFS,
        (("spec.rollout.analysis.interval", "500ms"),),
        "spec.rollout.analysis.interval",
    ),
    Invalid(
        "infs-zero-progress-deadline",
        INFS,
        (("spec.rollout.progressDeadline", "0s"),),
        "spec.rollout.progressDeadline",
    ),
    Invalid(
        "infs-sub-second-progress-deadline",
        INFS,
        (("spec.rollout.progressDeadline", "500ms"),),
        "spec.rollout.progressDeadline",
    ),
    Invalid("infs-min-zero", INFS, (("spec.replicas.min", 0),), "spec.replicas.min"),
    Invalid(
        "infs-min-zero-with-keda",
        INFS,
        (
            ("spec.replicas.min", 0),
            ("spec.autoscaling", {"metric": "prometheus", "query": "up", "target": 5}),
        ),
        "spec.replicas.min",
    ),
    Invalid(
        "infs-pvc-path-climbs-out",
        INFS,
        (("spec.model.uri", "pvc://models/../../../etc/passwd"), ("spec.model.sha256", DELETE)),
        "spec.model.uri",
    ),
    Invalid(
        "infs-pvc-bad-claim",
        INFS,
        (("spec.model.uri", "pvc://Models_A/m.bin"), ("spec.model.sha256", DELETE)),
        "spec.model.uri",
    ),
    Invalid("infs-size-limit-zero", INFS, (("spec.model.sizeLimit", "0"),), "spec.model.sizeLimit"),
    Invalid(
        "infs-size-limit-fraction",
        INFS,
        (("spec.model.sizeLimit", "1.5Gi"),),
        "spec.model.sizeLimit",
    ),
    Invalid(
        "infs-size-limit-milli", INFS, (("spec.model.sizeLimit", "500m"),), "spec.model.sizeLimit"
    ),
    Invalid(
        "infs-size-limit-overflows",
        INFS,
        (("spec.model.sizeLimit", "9999999Ti"),),
        "spec.model.sizeLimit",
    ),
    Invalid(
        "tj-negative-retryable-restarts",
        TJ,
        (("spec.retry.maxRetryableRestarts", -1),),
        "spec.retry.maxRetryableRestarts",
    ),
    Invalid(
        "tj-backoff-past-its-cap",
        TJ,
        (("spec.retry.backoffSeconds", 60), ("spec.retry.maxBackoffSeconds", 30)),
        "spec.retry.backoffSeconds",
    ),
    Invalid(
        "tj-backoff-over-default-cap",
        TJ,
        (("spec.retry.backoffSeconds", 600),),
        "spec.retry.backoffSeconds",
    ),
    Invalid(
        "tj-backoff-too-long",
        TJ,
        (("spec.retry.maxBackoffSeconds", 90000),),
        "spec.retry.maxBackoffSeconds",
    ),
    Invalid(
        "tj-checkpoint-gs",
        TJ,
        (("spec.checkpoint.uri", "gs://example-ml-checkpoints/run"),),
        "spec.checkpoint.uri",
    ),
    Invalid(
        "tj-checkpoint-uri-with-query",
        TJ,
        (("spec.checkpoint.uri", "s3://example-ml-checkpoints/run?versionId=1"),),
        "spec.checkpoint.uri",
    ),
    Invalid(
        "tj-checkpoint-endpoint-with-credentials",
        TJ,
        (("spec.checkpoint.endpoint", "https://key:secret@s3.example.com"),),
        "spec.checkpoint.endpoint",
    ),
    Invalid(
        "tj-checkpoint-endpoint-not-http",
        TJ,
        (("spec.checkpoint.endpoint", "ftp://s3.example.com"),),
        "spec.checkpoint.endpoint",
    ),
    Invalid(
        "tj-checkpoint-endpoint-without-uri",
        TJ,
        (
            ("spec.checkpoint.uri", DELETE),
            ("spec.checkpoint.persistentVolumeClaim", "ckpt"),
            ("spec.checkpoint.endpoint", "https://s3.example.com"),
        ),
        "spec.checkpoint.endpoint",
    ),
    Invalid(
        "tj-checkpoint-credentials-without-uri",
        TJ,
        (
            ("spec.checkpoint.uri", DELETE),
            ("spec.checkpoint.persistentVolumeClaim", "ckpt"),
            ("spec.checkpoint.credentialsSecret", "s3-credentials"),
        ),
        "spec.checkpoint.credentialsSecret",
    ),
    Invalid(
        "tj-checkpoint-bad-credentials-name",
        TJ,
        (("spec.checkpoint.credentialsSecret", "S3_Credentials"),),
        "spec.checkpoint.credentialsSecret",
    ),
    Invalid(
        "infs-s3-model-bad-bucket",
        INFS,
        (("spec.model.uri", "s3://My_Bucket/model.bin"),),
        "spec.model.uri",
    ),
    Invalid(
        "infs-s3-model-presigned",
        INFS,
        (("spec.model.uri", "s3://models/m.bin?X-Amz-Signature=abc"),),
        "spec.model.uri",
    ),
    Invalid(
        "infs-endpoint-on-https-model",
        INFS,
        (("spec.model.endpoint", "https://s3.example.com"),),
        "spec.model.endpoint",
    ),
    Invalid(
        "infs-credentials-on-https-model",
        INFS,
        (("spec.model.credentialsSecret", "s3-credentials"),),
        "spec.model.credentialsSecret",
    ),
    Invalid(
        "infs-endpoint-with-path",
        INFS,
        (
            ("spec.model.uri", "s3://models/sentiment/v7/"),
            ("spec.model.endpoint", "https://s3.example.com/bucket?x=1"),
        ),
        "spec.model.endpoint",
    ),
    Invalid(
        "infs-bad-credentials-name",
        INFS,
        (
            ("spec.model.uri", "gs://models/sentiment/v7/"),
            ("spec.model.credentialsSecret", "-hmac"),
        ),
        "spec.model.credentialsSecret",
    ),
    Invalid(
        "infs-off-hours-repeated-day",
        INFS,
        (
            (
                "spec.schedule",
                {"offHours": [{"days": ["Sat", "Sat"], "start": "00:00", "end": "00:00"}]},
            ),
        ),
        "spec.schedule.offHours[0].days",
    ),
    Invalid(
        "infs-off-hours-bad-time",
        INFS,
        (("spec.schedule", {"offHours": [{"days": ["Mon"], "start": "8:00", "end": "18:00"}]}),),
        "spec.schedule.offHours[0].start",
    ),
    Invalid(
        "infs-off-hours-bad-time-zone",
        INFS,
        (("spec.schedule", {"offHours": [OFF_HOURS], "timeZone": "Europe/Berlin CET"}),),
        "spec.schedule.timeZone",
    ),
    Invalid(
        "infs-idle-without-signal",
        INFS,
        (("spec.idle", {"after": "30m"}),),
        "spec.idle.requestsQuery",
    ),
    Invalid(
        "infs-idle-after-too-short",
        INFS,
        (("spec.idle", {"after": "10s", "gpuUtilizationBelow": 5}),),
        "spec.idle.after",
    ),
    Invalid(
        "infs-idle-gpu-over-100",
        INFS,
        (("spec.idle", {"after": "30m", "gpuUtilizationBelow": 101}),),
        "spec.idle.gpuUtilizationBelow",
    ),
    Invalid(
        "tj-start-window-bad-day",
        TJ,
        (("spec.schedule", {"startWindow": {**OFF_HOURS, "days": ["Someday"]}}),),
        "spec.schedule.startWindow.days[0]",
    ),
    Invalid(
        "budget-covers-nobody",
        BUDGET,
        (("spec.teams", []), ("spec.namespaces", DELETE)),
        "spec.teams",
    ),
    Invalid("budget-no-limit", BUDGET, (("spec.limit", DELETE),), "spec.limit"),
    Invalid(
        "budget-two-limits",
        BUDGET,
        (("spec.limit", {"gpuHours": 1, "amount": 100}),),
        "spec.limit.gpuHours",
    ),
    Invalid("budget-empty-limit", BUDGET, (("spec.limit", {}),), "spec.limit.gpuHours"),
    Invalid("budget-negative-limit", BUDGET, (("spec.limit.gpuHours", -1),), "spec.limit.gpuHours"),
    Invalid(
        "budget-rolling-without-days",
        BUDGET,
        (("spec.window", {"type": "RollingDays"}),),
        "spec.window.days",
    ),
    Invalid(
        "budget-days-on-a-calendar-window",
        BUDGET,
        (("spec.window.days", 7),),
        "spec.window.days",
    ),
    Invalid(
        "budget-unknown-window", BUDGET, (("spec.window.type", "Fortnight"),), "spec.window.type"
    ),
    Invalid(
        "budget-time-zone-not-a-name",
        BUDGET,
        (("spec.window.timeZone", "UTC+2 hours"),),
        "spec.window.timeZone",
    ),
    Invalid(
        "budget-threshold-over-100", BUDGET, (("spec.softThreshold", 101),), "spec.softThreshold"
    ),
    Invalid("budget-unknown-action", BUDGET, (("spec.action", "Kill"),), "spec.action"),
    Invalid("budget-team-not-a-label", BUDGET, (("spec.teams", ["NLP team"]),), "spec.teams"),
    Invalid(
        "budget-namespace-twice",
        BUDGET,
        (("spec.namespaces", ["research", "research"]),),
        "spec.namespaces",
    ),
)
