"""Every Prometheus metric the operator exports, defined once."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.registry import Collector

PREFIX = "stratus"
TRAININGJOBS = f"{PREFIX}_trainingjobs"
# `spec.team` is tenant input: only the teams the admin lists become label values, and every
# other team (or none) shares one, so no tenant can grow the number of series.
TEAM_LABELS = ("team",)
OTHER_TEAM = "other"
TRAINING_ATTEMPTS = Counter(
    f"{PREFIX}_training_attempts",
    "Attempts started (Jobs created) for TrainingJobs.",
    TEAM_LABELS,
)
TRAINING_PREEMPTIONS = Counter(
    f"{PREFIX}_training_preemptions",
    "Attempts ended by preemption (spot reclaim, node loss).",
    TEAM_LABELS,
)
TRAINING_RESTARTS = Counter(
    f"{PREFIX}_training_restarts",
    "Attempts ended by a counted application failure.",
    TEAM_LABELS,
)
TRAINING_RETRYABLE_RESTARTS = Counter(
    f"{PREFIX}_training_retryable_restarts",
    "Attempts ended by a retryable exit code.",
    TEAM_LABELS,
)
TRAINING_RESUMES = Counter(
    f"{PREFIX}_training_resumes", "Attempts started from a checkpoint.", TEAM_LABELS
)
TRAINING_GPU_SECONDS = Counter(
    f"{PREFIX}_training_gpu_seconds",
    "GPU time of ended attempts, from when their containers started running.",
    TEAM_LABELS,
)
# Metered usage, added as each resource's status.usage grows (the running attempt or live pods
# included), so increase() over a window is what the window used. Every label is bounded: team
# and cost_center by the admin's lists (any other value shares `other`), gpu_type by the price
# table's keys (`other` without a table), kind and capacity_type by design.
USAGE_LABELS = ("team", "cost_center", "kind", "gpu_type", "capacity_type")
# In seconds, Prometheus's base unit (promtool refuses hours); dashboards divide by 3600.
GPU_SECONDS_NAME = f"{PREFIX}_gpu_seconds"
COST_NAME = f"{PREFIX}_cost"
GPU_SECONDS = Counter(
    GPU_SECONDS_NAME,
    "GPU time of TrainingJobs and InferenceServices, from when their containers started.",
    USAGE_LABELS,
)
COST = Counter(
    COST_NAME,
    "What those GPU-hours cost at the admin's price table, in its currency.",
    USAGE_LABELS,
)
RECONCILE_SECONDS = Histogram(
    f"{PREFIX}_reconcile_duration_seconds",
    "Time to reconcile one resource.",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
RECONCILE_ERRORS = Counter(
    f"{PREFIX}_reconcile_errors", "Reconciles that failed and will be retried.", ["kind"]
)
EVENTS_PENDING = Gauge(
    f"{PREFIX}_events_pending", "Events waiting to be posted: after a burst they trail behind."
)
EVENTS_DROPPED = Counter(
    f"{PREFIX}_events_dropped", "Events dropped because too many were waiting to be posted."
)

INFERENCESERVICES = f"{PREFIX}_inferenceservices"
ROLLOUTS = Counter(
    f"{PREFIX}_rollouts", "Canary rollouts finished, by outcome (promoted, aborted).", ["outcome"]
)
# The labels of the series kept per InferenceService, removed when it is deleted.
SERVICE_LABELS = ("namespace", "name")
ANALYSIS_LABELS = (*SERVICE_LABELS, "metric")
CANARY_WEIGHT = Gauge(
    f"{PREFIX}_canary_weight", "Current canary traffic share, percent.", SERVICE_LABELS
)
ANALYSIS_VALUE = Gauge(
    f"{PREFIX}_analysis_value",
    "Last value of each canary analysis metric.",
    ANALYSIS_LABELS,
)
ANALYSIS_FAILURES = Counter(
    f"{PREFIX}_analysis_failures",
    "Analysis measurements outside their bounds.",
    ANALYSIS_LABELS,
)
# The latest validation's figures only: revisions come and go, so the previous candidate's
# series are removed when a new one reports.
VALIDATION_LABELS = (*SERVICE_LABELS, "revision", "comparator", "source")
VALIDATION_AGREEMENT = Gauge(
    f"{PREFIX}_validation_agreement",
    "A candidate's agreement with its baseline beyond the noise floor (0 to 1), per comparator "
    "and source of requests (replay, shadow), from its latest validation report.",
    VALIDATION_LABELS,
)
VALIDATION_NOISE_FLOOR = Gauge(
    f"{PREFIX}_validation_noise_floor",
    "The baseline's disagreement with itself (0 to 1), per comparator and source.",
    VALIDATION_LABELS,
)
VALIDATION_SAMPLES = Gauge(
    f"{PREFIX}_validation_samples",
    "Samples compared, per comparator and source, in the latest validation report.",
    VALIDATION_LABELS,
)
VALIDATIONS = Counter(
    f"{PREFIX}_validations", "Validation stages finished, by outcome (passed, failed).", ["outcome"]
)
VALIDATION_FIGURES = (VALIDATION_AGREEMENT, VALIDATION_NOISE_FLOOR, VALIDATION_SAMPLES)
PER_INFERENCESERVICE: tuple[tuple[MetricWrapperBase, tuple[str, ...]], ...] = (
    (CANARY_WEIGHT, SERVICE_LABELS),
    (ANALYSIS_VALUE, ANALYSIS_LABELS),
    (ANALYSIS_FAILURES, ANALYSIS_LABELS),
    *((figure, VALIDATION_LABELS) for figure in VALIDATION_FIGURES),
)

TRAINING_COUNTS = {
    "attempts": TRAINING_ATTEMPTS,
    "preemptions": TRAINING_PREEMPTIONS,
    "restarts": TRAINING_RESTARTS,
    "retryable_restarts": TRAINING_RETRYABLE_RESTARTS,
    "resumes": TRAINING_RESUMES,
}


def record_usage(
    labels: tuple[str, str, str, str], added: Iterable[tuple[str, float, float | None]]
) -> None:
    """Add what a status write metered: `labels` are team, cost_center, kind and gpu_type;
    `added` has (capacity type, GPU-hours, cost or None) items."""
    for capacity, hours, cost in added:
        GPU_SECONDS.labels(*labels, capacity).inc(hours * 3600)
        if cost is not None:
            COST.labels(*labels, capacity).inc(cost)


def team_label(team: str | None, teams: Collection[str]) -> str:
    """The `team` label value of a TrainingJob's series: its team when the admin listed it."""
    return team if team and team in teams else OTHER_TEAM


class PhaseCollector(Collector):
    """Resources by phase, counted from the operator's cache at scrape time."""

    def __init__(self, name: str, help_text: str, count: Callable[[], dict[str, int]]) -> None:
        self._name = name
        self._help = help_text
        self._count = count

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(self._name, self._help, labels=["phase"])
        for phase, value in sorted(self._count().items()):
            family.add_metric([phase], value)
        yield family


def register_phases(name: str, help_text: str, count: Callable[[], dict[str, int]]) -> None:
    REGISTRY.register(PhaseCollector(name, help_text, count))


BUDGET_USED_RATIO = f"{PREFIX}_budget_used_ratio"
BUDGET_USED = f"{PREFIX}_budget_used"
BUDGET_LIMIT = f"{PREFIX}_budget_limit"
BUDGET_SOFT_THRESHOLD = f"{PREFIX}_budget_soft_threshold_ratio"


@dataclass(frozen=True)
class BudgetFigures:
    """One Budget's figures: its name (the admin's, so a bounded label), the limit's unit
    (gpu_hours or amount), usage in the window and the limit in that unit, and the soft
    threshold as a ratio."""

    budget: str
    unit: str
    used: float
    limit: float
    soft_threshold: float

    @property
    def ratio(self) -> float:
        if self.limit > 0:
            return self.used / self.limit
        return 1.0 if self.used > 0 else 0.0


class BudgetCollector(Collector):
    """Each Budget's usage against its limit, read from the operator's cache at scrape time:
    a deleted Budget's series go with it."""

    def __init__(self, figures: Callable[[], Iterable[BudgetFigures]]) -> None:
        self._figures = figures

    def collect(self) -> Iterator[GaugeMetricFamily]:
        ratio = GaugeMetricFamily(
            BUDGET_USED_RATIO, "Usage in the window over the Budget's limit.", labels=["budget"]
        )
        used = GaugeMetricFamily(
            BUDGET_USED, "Usage in the window, in the limit's unit.", labels=["budget", "unit"]
        )
        limit = GaugeMetricFamily(BUDGET_LIMIT, "The Budget's limit.", labels=["budget", "unit"])
        soft = GaugeMetricFamily(
            BUDGET_SOFT_THRESHOLD,
            "The Budget's soft threshold, as a ratio of its limit.",
            labels=["budget"],
        )
        for figures in sorted(self._figures(), key=lambda f: f.budget):
            ratio.add_metric([figures.budget], figures.ratio)
            used.add_metric([figures.budget, figures.unit], figures.used)
            limit.add_metric([figures.budget, figures.unit], figures.limit)
            soft.add_metric([figures.budget], figures.soft_threshold)
        yield from (ratio, used, limit, soft)


def register_budgets(figures: Callable[[], Iterable[BudgetFigures]]) -> None:
    REGISTRY.register(BudgetCollector(figures))


WORKLOAD_GPU_SECONDS = f"{PREFIX}_workload_gpu_seconds"
WORKLOAD_COST = f"{PREFIX}_workload_cost"
# One series per live workload (and capacity type), as kube-state-metrics has per object: uid
# tells a workload from one made again under its name.
WORKLOAD_LABELS = ("namespace", "kind", "name", "uid", "team")


class WorkloadUsageCollector(Collector):
    """Each TrainingJob's and InferenceService's status.usage from the operator's cache at
    scrape time: cumulative since the workload was created, so any replica or restart of the
    operator exports the same value, and what a window used is the latest value less the
    earliest (`stratus cost --by workload --prometheus`). A deleted workload's series end with
    it; Prometheus keeps their samples for the windows they cover."""

    def __init__(self, workloads: Callable[[], Iterable[tuple[str, Mapping[str, Any]]]]) -> None:
        self._workloads = workloads

    def collect(self) -> Iterator[GaugeMetricFamily]:
        seconds = GaugeMetricFamily(
            WORKLOAD_GPU_SECONDS,
            "A workload's GPU time since it was created, by capacity type (its status.usage).",
            labels=[*WORKLOAD_LABELS, "capacity_type"],
        )
        cost = GaugeMetricFamily(
            WORKLOAD_COST,
            "What a workload's GPU time since it was created cost (its status.usage.cost).",
            labels=list(WORKLOAD_LABELS),
        )
        for kind, obj in self._workloads():
            usage = (obj.get("status") or {}).get("usage")
            if not usage:
                continue
            meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
            labels = [
                str(meta.get("namespace") or ""),
                kind,
                str(meta.get("name") or ""),
                str(meta.get("uid") or ""),
                str(spec.get("team") or ""),
            ]
            hours = usage.get("gpuHours") or {}
            for capacity, key in (("spot", "spot"), ("on-demand", "onDemand")):
                seconds.add_metric([*labels, capacity], float(hours.get(key) or 0) * 3600)
            if usage.get("cost") is not None:
                cost.add_metric(labels, float(usage["cost"]))
        yield from (seconds, cost)


def register_workload_usage(
    workloads: Callable[[], Iterable[tuple[str, Mapping[str, Any]]]],
) -> None:
    REGISTRY.register(WorkloadUsageCollector(workloads))


def series_of(
    samples: Iterable[Mapping[str, str]], labels: tuple[str, ...], namespace: str, name: str
) -> list[tuple[str, ...]]:
    """The label values, in `labels` order, of every series among `samples` (each a sample's
    labels) that belongs to the InferenceService `namespace`/`name`; each once."""
    found: list[tuple[str, ...]] = []
    for sample in samples:
        if sample.get("namespace") != namespace or sample.get("name") != name:
            continue
        if not all(label in sample for label in labels):
            continue
        values = tuple(sample[label] for label in labels)
        if values not in found:
            found.append(values)
    return found


def record_validation(
    namespace: str, name: str, revision: str, results: Iterable[Mapping[str, Any]]
) -> None:
    """A validation report's figures (status.validation.results), replacing the previous
    candidate's."""
    for figure in VALIDATION_FIGURES:
        samples = [sample.labels for family in figure.collect() for sample in family.samples]
        for values in series_of(samples, VALIDATION_LABELS, namespace, name):
            figure.remove(*values)
    for result in results:
        labels = (namespace, name, revision, result["name"], result["source"])
        for figure, key in (
            (VALIDATION_AGREEMENT, "adjusted"),
            (VALIDATION_NOISE_FLOOR, "noiseFloor"),
            (VALIDATION_SAMPLES, "samples"),
        ):
            if result.get(key) is not None:
                figure.labels(*labels).set(result[key])


def forget_inferenceservice(namespace: str, name: str) -> None:
    """Remove every series of a deleted InferenceService, so that its last canary weight and
    analysis values are not exported (and kept in memory) for ever."""
    for metric, labels in PER_INFERENCESERVICE:
        samples = [sample.labels for family in metric.collect() for sample in family.samples]
        for values in series_of(samples, labels, namespace, name):
            metric.remove(*values)
