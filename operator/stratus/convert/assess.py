"""`stratus assess`: what each converted workload needs before it moves, whether it can run on
spot capacity, and what it costs a month on spot versus on-demand, from a price file.

Pure: it reads Conversions (what the converters made) and a PriceTable, never the cluster.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from stratus.api.common import GROUP, VERSION
from stratus.api.inferenceservice import InferenceServiceSpec
from stratus.api.trainingjob import TrainingJobSpec
from stratus.convert.report import Conversion, Manifest, Note

Strategy = Literal["move-as-is", "adapt", "rework"]
STRATEGIES: tuple[Strategy, ...] = ("move-as-is", "adapt", "rework")
SpotVerdict = Literal["suitable", "after-changes", "unsuitable"]
SPOT_VERDICTS: tuple[SpotVerdict, ...] = ("suitable", "after-changes", "unsuitable")

API_VERSION = f"{GROUP}/{VERSION}"
# A run this short loses little to a preemption even when it restarts from the beginning.
SHORT_RUN_HOURS = 1.0

# Dropped source fields that change what the workload is, so converting is not enough: elastic
# training, job arrays and dependencies, heterogeneous jobs (named in the field or the reason:
# `#SBATCH -a 0-9` says "array" only in its reason), parameter servers, KServe transformers and
# explainers, init or extra containers, the image or the command.
ESSENTIAL_WORDS = re.compile(
    r"elastic|\barrays?\b|dependenc(y|ies)|\bhet(erogeneous|job|-group)?\b|transformer|explainer",
    re.IGNORECASE,
)
ESSENTIAL_FIELD = re.compile(
    r"(^|\.)PS(\.|$)|initContainers|containers\[[1-9]|(^|\.)(image|command)$"
)
# Words in a program's command line or environment that say it saves or resumes state.
CHECKPOINT_HINT = re.compile(r"checkpoint|ckpt|resume|save[_-]?(steps|interval|every)", re.I)
# Source fields that say the workload may be stopped and started again (Slurm --requeue or
# --signal; a restart policy that restarts), or that it must not be (--no-requeue).
INTERRUPTIBLE_FIELD = re.compile(r"requeue|signal", re.IGNORECASE)
RESTART_POLICY = re.compile(r"restartPolicy", re.IGNORECASE)
RESTARTS = re.compile(r"OnFailure|ExitCode|Always")
NOT_INTERRUPTIBLE = re.compile(r"no-requeue", re.IGNORECASE)


class PriceFileError(ValueError):
    """A price file that cannot be used; its message is one line naming the field."""


class _PriceModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", strict=True
    )


class GpuPrice(_PriceModel):
    """Price of one GPU for one hour, by capacity type."""

    spot: float = Field(ge=0)
    on_demand: float = Field(ge=0)


class PriceTable(_PriceModel):
    """The price file: GPU-hour prices by GPU type, and the assumptions that turn a workload
    into GPU-hours a month."""

    currency: str = Field(default="USD", min_length=1, max_length=8)
    # Where the numbers come from (a quote, a date, "illustrative"): shown with every report.
    source: str = Field(default="", max_length=200)
    default_gpu_type: str = Field(min_length=1)
    gpu_hour: dict[str, GpuPrice] = Field(min_length=1)
    training_runs_per_month: float = Field(default=1.0, gt=0)
    default_training_hours: float = Field(default=24.0, gt=0)
    serving_hours_per_month: float = Field(default=730.0, gt=0, le=744)

    @model_validator(mode="after")
    def _default_priced(self) -> PriceTable:
        if self.default_gpu_type not in self.gpu_hour:
            raise ValueError(f"defaultGpuType {self.default_gpu_type} has no gpuHour entry")
        return self


def load_prices(text: str, source: str = "price file") -> PriceTable:
    """Parse a YAML or JSON price file; a bad one raises PriceFileError in one line."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise PriceFileError(f"{source}: not YAML or JSON: {str(e).splitlines()[0]}") from None
    if not isinstance(doc, dict):
        raise PriceFileError(f"{source}: expected a mapping with gpuHour and defaultGpuType")
    try:
        return PriceTable.model_validate(doc)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        raise PriceFileError(f"{source}: {where}: {err['msg']}") from None


@dataclass(frozen=True)
class GpuNeeds:
    per_unit: int  # GPUs per worker or replica
    units: int  # workers, or replicas.min
    unit: Literal["worker", "replica"]
    gpu_type: str  # the default GPU type of the price file when the workload names none
    type_assumed: bool

    @property
    def total(self) -> int:
        return self.per_unit * self.units


@dataclass(frozen=True)
class SpotFit:
    verdict: SpotVerdict
    checkpoints: Literal["yes", "hinted", "no", "n/a"]
    interruptible: Literal["yes", "no", "unknown"]
    hours_per_run: float | None  # None for a service: it runs all month
    hours_assumed: bool
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Cost:
    gpu_hours: float  # a month
    on_demand: float | None  # None when the GPU type has no price
    spot: float | None


@dataclass
class WorkloadAssessment:
    source: str
    source_kind: str
    name: str
    kind: str | None  # TrainingJob or InferenceService; None when nothing was made
    strategy: Strategy
    why: list[str]
    todo: list[Note]
    gpus: GpuNeeds | None = None
    spot: SpotFit | None = None
    cost: Cost | None = None


@dataclass
class Summary:
    workloads: int
    by_strategy: dict[Strategy, int]
    by_spot: dict[SpotVerdict, int]
    gpus: int
    gpus_by_type: dict[str, int]
    on_demand: float
    # Spot prices for the workloads suitable now, on-demand for the rest.
    spot_now: float
    # Also spot for those suitable after the changes their spot reasons name.
    spot_after_changes: float
    unpriced: list[str] = field(default_factory=list)

    @property
    def savings_now(self) -> float:
        return self.on_demand - self.spot_now

    @property
    def savings_after_changes(self) -> float:
        return self.on_demand - self.spot_after_changes


@dataclass
class Assessment:
    workloads: list[WorkloadAssessment]
    summary: Summary
    prices: PriceTable


def assess(conversions: list[Conversion], prices: PriceTable) -> Assessment:
    """One row per Stratus workload each conversion made (one row for a conversion that made
    none), and a summary of the set."""
    rows: list[WorkloadAssessment] = []
    for conv in conversions:
        workloads = [r for r in conv.resources if _stratus_kind(r)]
        if conv.error or not workloads:
            rows.append(_row(conv, None, prices))
        else:
            rows.extend(_row(conv, r, prices) for r in workloads)
    return Assessment(rows, _summarize(rows), prices)


def _stratus_kind(resource: Manifest) -> str | None:
    kind = resource.get("kind")
    if resource.get("apiVersion") == API_VERSION and kind in ("TrainingJob", "InferenceService"):
        return str(kind)
    return None


def _row(conv: Conversion, resource: Manifest | None, prices: PriceTable) -> WorkloadAssessment:
    strategy, why = _strategy(conv)
    todo = list(conv.notes)
    # A document too broken to parse has neither kind nor name: the report names its source.
    source_kind = conv.kind or "unknown kind"
    if resource is None:
        name = conv.name or conv.source
        return WorkloadAssessment(conv.source, source_kind, name, None, strategy, why, todo)
    kind = _stratus_kind(resource)
    meta = resource.get("metadata") or {}
    name = str(meta.get("name") or conv.name or conv.source)
    raw = resource.get("spec") or {}
    row = WorkloadAssessment(conv.source, source_kind, name, kind, strategy, why, todo)
    try:
        if kind == "TrainingJob":
            tj = TrainingJobSpec.model_validate(raw)
            row.gpus = _needs(tj.resources.gpu, tj.workers, "worker", tj.resources.gpu_type, prices)
            row.spot = _training_spot(tj, raw, conv.notes, prices)
            hours = row.spot.hours_per_run or 0.0
            row.cost = _cost(row.gpus, hours * prices.training_runs_per_month, prices)
        else:
            isvc = InferenceServiceSpec.model_validate(raw)
            row.gpus = _needs(
                isvc.resources.gpu, isvc.replicas.min, "replica", isvc.resources.gpu_type, prices
            )
            row.spot = _serving_spot(isvc)
            row.cost = _cost(row.gpus, prices.serving_hours_per_month, prices)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        row.strategy = "rework"
        row.why = [f"the {kind} made does not validate: spec.{where}: {err['msg']}", *row.why]
    return row


def _strategy(conv: Conversion) -> tuple[Strategy, list[str]]:
    if conv.error:
        return "rework", [f"conversion failed: {conv.error}"]
    if not any(_stratus_kind(r) for r in conv.resources):
        return "rework", ["no TrainingJob or InferenceService was made"]
    essential = [n for n in conv.notes if n.kind == "dropped" and _essential(n)]
    if essential:
        return "rework", [f"dropped {n.field}: {n.reason}" for n in essential]
    if conv.notes:
        counts = {k: sum(n.kind == k for n in conv.notes) for k in ("dropped", "changed", "action")}
        parts = ", ".join(f"{v} {k}" for k, v in counts.items() if v)
        return "adapt", [f"{len(conv.notes)} field(s) to review: {parts}"]
    return "move-as-is", ["every field carried over as it was"]


def _essential(note: Note) -> bool:
    return bool(
        ESSENTIAL_FIELD.search(note.field) or ESSENTIAL_WORDS.search(f"{note.field} {note.reason}")
    )


def _needs(
    gpu: int, units: int, unit: Literal["worker", "replica"], gpu_type: str | None, p: PriceTable
) -> GpuNeeds:
    return GpuNeeds(gpu, units, unit, gpu_type or p.default_gpu_type, gpu_type is None)


def _checkpoints(tj: TrainingJobSpec) -> Literal["yes", "hinted", "no"]:
    if tj.checkpoint is not None:
        return "yes"
    words = [*tj.command, *tj.args, *(f"{e.name}={e.value or ''}" for e in tj.env)]
    return "hinted" if any(CHECKPOINT_HINT.search(w) for w in words) else "no"


def _interruptible(
    tj: TrainingJobSpec, raw: dict[str, Any], notes: list[Note]
) -> Literal["yes", "no", "unknown"]:
    if any(NOT_INTERRUPTIBLE.search(f"{n.field} {n.reason}") for n in notes):
        return "no"
    said = any(INTERRUPTIBLE_FIELD.search(n.field) for n in notes)
    restarts = any(RESTART_POLICY.search(n.field) and RESTARTS.search(n.reason) for n in notes)
    # An explicit retry is the source's restart policy carried over.
    retries = (raw.get("retry") or {}).get("maxRestarts", 0) > 0
    return "yes" if tj.spot.enabled or said or restarts or retries else "unknown"


def _training_spot(
    tj: TrainingJobSpec, raw: dict[str, Any], notes: list[Note], prices: PriceTable
) -> SpotFit:
    reasons: list[str] = []
    checkpoints = _checkpoints(tj)
    interruptible = _interruptible(tj, raw, notes)
    if tj.active_deadline_seconds is not None:
        hours, assumed = tj.active_deadline_seconds / 3600, False
    else:
        hours, assumed = prices.default_training_hours, True

    if interruptible == "no":
        verdict: SpotVerdict = "unsuitable"
        reasons.append("the source asks never to be requeued or restarted")
    elif checkpoints == "yes":
        verdict = "suitable"
        reasons.append("it checkpoints: a preemption resumes from the latest checkpoint")
    elif not assumed and hours <= SHORT_RUN_HOURS:
        verdict = "suitable"
        reasons.append(f"a run is at most {_hours(hours)}: a preemption reruns little")
    else:
        verdict = "after-changes"
        if checkpoints == "hinted":
            reasons.append(
                "its command or environment mentions checkpoints: point them at "
                "spec.checkpoint so a preemption resumes"
            )
        else:
            reasons.append(
                "no checkpoint: a preemption restarts it from the beginning; add "
                "checkpointing (the Stratus SDK) and spec.checkpoint"
            )
    if interruptible == "unknown":
        reasons.append("the source says nothing of being interrupted: check it tolerates SIGTERM")
    return SpotFit(verdict, checkpoints, interruptible, hours, assumed, tuple(reasons))


def _serving_spot(isvc: InferenceServiceSpec) -> SpotFit:
    if isvc.replicas.min >= 2:
        reason = f"{isvc.replicas.min} replicas at least: a reclaimed node leaves others serving"
        return SpotFit("suitable", "n/a", "yes", None, False, (reason,))
    reason = "one replica: a reclaimed node stops the service; raise replicas.min to 2"
    return SpotFit("after-changes", "n/a", "no", None, False, (reason,))


def _cost(needs: GpuNeeds, hours: float, prices: PriceTable) -> Cost:
    gpu_hours = needs.total * hours
    price = prices.gpu_hour.get(needs.gpu_type)
    if price is None:
        return Cost(gpu_hours, None, None)
    return Cost(gpu_hours, gpu_hours * price.on_demand, gpu_hours * price.spot)


def _summarize(rows: list[WorkloadAssessment]) -> Summary:
    s = Summary(
        workloads=len(rows),
        by_strategy={k: sum(r.strategy == k for r in rows) for k in STRATEGIES},
        by_spot={k: sum(bool(r.spot and r.spot.verdict == k) for r in rows) for k in SPOT_VERDICTS},
        gpus=0,
        gpus_by_type={},
        on_demand=0.0,
        spot_now=0.0,
        spot_after_changes=0.0,
    )
    for r in rows:
        if r.gpus is not None:
            s.gpus += r.gpus.total
            if r.gpus.total:
                s.gpus_by_type[r.gpus.gpu_type] = s.gpus_by_type.get(r.gpus.gpu_type, 0) + (
                    r.gpus.total
                )
        if r.cost is None or r.spot is None:
            continue
        if r.cost.on_demand is None or r.cost.spot is None:
            s.unpriced.append(r.name)
            continue
        s.on_demand += r.cost.on_demand
        s.spot_now += r.cost.spot if r.spot.verdict == "suitable" else r.cost.on_demand
        s.spot_after_changes += r.cost.spot if r.spot.verdict != "unsuitable" else r.cost.on_demand
    s.gpus_by_type = dict(sorted(s.gpus_by_type.items()))
    return s


def _hours(h: float) -> str:
    return f"{h:g} h"


def _money(amount: float | None, currency: str) -> str:
    return "no price" if amount is None else f"{currency} {amount:,.2f}"


def _percent(part: float, whole: float) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "0%"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _gpu_text(g: GpuNeeds | None) -> str:
    if g is None:
        return "-"
    if g.total == 0:
        return "none"
    assumed = " (assumed)" if g.type_assumed else ""
    return f"{g.units} x {g.per_unit} {g.gpu_type}{assumed} = {g.total}"


def _amount(amount: float | None) -> str:
    return "-" if amount is None else f"{amount:,.2f}"


def render_markdown(a: Assessment) -> str:
    """The assessment as a Markdown report: assumptions, summary, one table row and one section
    per workload."""
    p, s, cur = a.prices, a.summary, a.prices.currency
    out = ["# Stratus migration assessment", ""]
    source = f" ({p.source})" if p.source else ""
    out.append(
        f"Prices in {cur}{source}. Training runs its deadline (or "
        f"{_hours(p.default_training_hours)} when it has none) "
        f"{p.training_runs_per_month:g} time(s) a month; serving runs "
        f"{_hours(p.serving_hours_per_month)} a month at replicas.min. A workload naming no GPU "
        f"type is priced as {p.default_gpu_type}."
    )
    out += ["", "## Summary", "", "| | |", "|---|---|"]
    strategies = ", ".join(f"{k} {v}" for k, v in s.by_strategy.items())
    spots = ", ".join(f"{k} {v}" for k, v in s.by_spot.items())
    by_type = ", ".join(f"{t}: {n}" for t, n in s.gpus_by_type.items())
    out += [
        f"| Workloads | {s.workloads} ({strategies}) |",
        f"| Spot | {spots} |",
        f"| GPUs | {s.gpus}" + (f" ({by_type})" if by_type else "") + " |",
        f"| Monthly cost on demand | {_money(s.on_demand, cur)} |",
        f"| Monthly cost, spot where suitable now | {_money(s.spot_now, cur)} "
        f"(saves {_money(s.savings_now, cur)}, {_percent(s.savings_now, s.on_demand)}) |",
        f"| Monthly cost, spot after changes | {_money(s.spot_after_changes, cur)} "
        f"(saves {_money(s.savings_after_changes, cur)}, "
        f"{_percent(s.savings_after_changes, s.on_demand)}) |",
    ]
    if s.unpriced:
        out.append(
            "| Not priced (GPU type missing from the price file; not in the totals) "
            f"| {', '.join(s.unpriced)} |"
        )
    out += [
        "",
        "## Workloads",
        "",
        f"| Workload | Source | Strategy | GPUs | Spot | On demand / month ({cur}) "
        f"| Spot / month ({cur}) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in a.workloads:
        cells = [
            r.name,
            f"{r.source_kind} ({r.source})",
            r.strategy,
            _gpu_text(r.gpus),
            r.spot.verdict if r.spot else "-",
            _amount(r.cost.on_demand) if r.cost else "-",
            _amount(r.cost.spot) if r.cost else "-",
        ]
        out.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    out += ["", "## Details"]
    for r in a.workloads:
        out += ["", f"### {r.name}", ""]
        made = f" → {r.kind}" if r.kind else ""
        out.append(f"- Source: {r.source_kind} `{r.source}`{made}")
        out.append(f"- Strategy: **{r.strategy}**: " + "; ".join(r.why))
        if r.gpus is not None:
            out.append(f"- GPUs: {_gpu_text(r.gpus)} ({r.gpus.unit}s x GPUs each)")
        if r.spot is not None:
            sp = r.spot
            runs = (
                "runs all month"
                if sp.hours_per_run is None
                else f"a run takes {_hours(sp.hours_per_run)}"
                + (" (assumed: no deadline)" if sp.hours_assumed else "")
            )
            out.append(
                f"- Spot: **{sp.verdict}**: checkpoints {sp.checkpoints}, interruptible "
                f"{sp.interruptible}, {runs}; " + "; ".join(sp.reasons)
            )
        if r.cost is not None:
            out.append(
                f"- Cost a month: {r.cost.gpu_hours:,.0f} GPU-hours; on demand "
                f"{_money(r.cost.on_demand, cur)}, spot {_money(r.cost.spot, cur)}"
            )
        if r.todo:
            out.append("- Fields to review:")
            for n in r.todo:
                todo = f" To do: {n.todo.rstrip('.')}." if n.todo else ""
                out.append(f"  - `{n.field}` ({n.kind}): {n.reason.rstrip('.')}.{todo}")
    return "\n".join(out) + "\n"


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 2)


def as_json(a: Assessment) -> dict[str, Any]:
    """The assessment as plain data for `--output json`."""
    s, p = a.summary, a.prices
    workloads: list[dict[str, Any]] = []
    for r in a.workloads:
        g, sp, c = r.gpus, r.spot, r.cost
        workloads.append(
            {
                "name": r.name,
                "source": r.source,
                "sourceKind": r.source_kind,
                "kind": r.kind,
                "strategy": r.strategy,
                "why": r.why,
                "notes": [n.as_dict() for n in r.todo],
                "gpus": None
                if g is None
                else {
                    "perUnit": g.per_unit,
                    "units": g.units,
                    "unit": g.unit,
                    "total": g.total,
                    "type": g.gpu_type,
                    "typeAssumed": g.type_assumed,
                },
                "spot": None
                if sp is None
                else {
                    "verdict": sp.verdict,
                    "checkpoints": sp.checkpoints,
                    "interruptible": sp.interruptible,
                    "hoursPerRun": sp.hours_per_run,
                    "hoursAssumed": sp.hours_assumed,
                    "reasons": list(sp.reasons),
                },
                "monthlyCost": None
                if c is None
                else {
                    "gpuHours": _round(c.gpu_hours),
                    "onDemand": _round(c.on_demand),
                    "spot": _round(c.spot),
                },
            }
        )
    return {
        "prices": p.model_dump(by_alias=True),
        "summary": {
            "workloads": s.workloads,
            "byStrategy": dict(s.by_strategy),
            "bySpot": dict(s.by_spot),
            "gpus": s.gpus,
            "gpusByType": s.gpus_by_type,
            "currency": p.currency,
            "monthlyOnDemand": _round(s.on_demand),
            "monthlySpotNow": _round(s.spot_now),
            "monthlySpotAfterChanges": _round(s.spot_after_changes),
            "savingsNow": _round(s.savings_now),
            "savingsAfterChanges": _round(s.savings_after_changes),
            "unpriced": s.unpriced,
        },
        "workloads": workloads,
    }
