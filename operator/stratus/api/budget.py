"""Budget: the admin's cap on GPU-hours or money spent by teams or namespaces in a recurring
window (a calendar month or week, or the last N days). Cluster-scoped: tenants cannot write it.

A workload is covered when its namespace is listed in `namespaces` or its spec.team in `teams`
(either matches: a Budget caps the union, so listing both never covers less than either)."""

from __future__ import annotations

import zoneinfo
from typing import Annotated, ClassVar, Literal

from pydantic import Field, field_validator
from pydantic.config import JsonDict

from stratus.api.common import (
    CONDITIONS_LIST,
    DEFAULTED,
    DNS_LABEL_PATTERN,
    LABEL_VALUE_PATTERN,
    ApiModel,
    Condition,
    Rule,
)

KIND = "Budget"
PLURAL = "budgets"
# A Budget names no children; its name is a metric label value and an Event's object.
MAX_NAME_LENGTH = 63
# IANA names (Europe/Berlin, America/Argentina/Buenos_Aires, Etc/GMT+5, UTC); the operator checks
# that the name exists with the time-zone database, which the API server does not have.
TIME_ZONE_PATTERN = r"^[A-Za-z][-A-Za-z0-9_+]*(/[A-Za-z0-9][-A-Za-z0-9_+]*)*$"
# The largest consumers a Budget's status lists.
TOP_CONSUMERS = 5
# Ledger entries a Budget's status keeps, far below etcd's object size limit (~1.5 MiB) however
# many workloads a tenant creates: an entry takes ~300 bytes.
MAX_LEDGER_ENTRIES = 1000

TeamName = Annotated[str, Field(min_length=1, max_length=63, pattern=LABEL_VALUE_PATTERN)]
NamespaceName = Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL_PATTERN)]
SET_LIST: JsonDict = {"x-kubernetes-list-type": "set"}
WindowType = Literal["CalendarMonth", "CalendarWeek", "RollingDays"]
Action = Literal["Block", "SpotOnly"]


def _known_zone(name: str) -> str:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        message = f"unknown time zone {name!r}: use an IANA name such as Europe/Berlin"
        raise ValueError(message) from exc
    return name


class BudgetWindow(ApiModel):
    """The recurring period usage is counted in: CalendarMonth (from the 1st, 00:00), CalendarWeek
    (ISO weeks, from Monday 00:00) or RollingDays (the last `days` days, counted in whole days:
    it starts at midnight `days - 1` days before today and rolls over every midnight), each in
    `timeZone`."""

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            # has(self.type): the API server also checks the rule against the default ({}).
            cel="(has(self.type) && self.type == 'RollingDays') == has(self.days)",
            message="days is required with type RollingDays, and only with it",
            field_path=".days",
            check=lambda w: (w.type == "RollingDays") == (w.days is not None),
        ),
    )

    type: WindowType = Field(
        default="CalendarMonth", description="CalendarMonth, CalendarWeek or RollingDays."
    )
    days: int | None = Field(
        default=None, ge=1, le=366, description="Length of a RollingDays window, in days."
    )
    time_zone: str = Field(
        default="UTC",
        min_length=1,
        max_length=64,
        pattern=TIME_ZONE_PATTERN,
        description="IANA time zone the window's days start in, e.g. Europe/Berlin; UTC when "
        "unset. Midnights are local, so a day may be 23 or 25 hours across a DST change.",
    )

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, name: str) -> str:
        return _known_zone(name)


class BudgetLimit(ApiModel):
    """The hard limit: GPU-hours, or an amount of money in the operator's currency (chart value
    cost.currency, priced by cost.prices). Exactly one."""

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="has(self.gpuHours) != has(self.amount)",
            message="set exactly one of gpuHours and amount",
            field_path=".gpuHours",
            check=lambda lim: (lim.gpu_hours is None) != (lim.amount is None),
        ),
    )

    gpu_hours: float | None = Field(
        default=None, ge=0, description="GPU-hours in a window, spot and on-demand together."
    )
    amount: float | None = Field(
        default=None,
        ge=0,
        description="Money in a window, at the operator's price table, in its currency.",
    )


class BudgetSpec(ApiModel):
    """Who the Budget covers, over which window, up to which limit, and what happens there."""

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="(has(self.teams) && size(self.teams) > 0) || "
            "(has(self.namespaces) && size(self.namespaces) > 0)",
            message="name at least one team or namespace to cover",
            field_path=".teams",
            check=lambda s: bool(s.teams or s.namespaces),
        ),
    )

    teams: list[TeamName] = Field(
        default_factory=list,
        max_length=64,
        description="Teams covered (a workload's spec.team). A workload whose team or "
        "namespace is listed is covered. spec.team is written by the workload's author, who "
        "can change or drop it: to enforce a limit, list the team's namespaces.",
        json_schema_extra=SET_LIST,
    )
    namespaces: list[NamespaceName] = Field(
        default_factory=list,
        max_length=256,
        description="Namespaces covered. A workload whose team or namespace is listed is covered.",
        json_schema_extra=SET_LIST,
    )
    window: BudgetWindow = Field(
        default_factory=BudgetWindow, description=BudgetWindow.__doc__, json_schema_extra=DEFAULTED
    )
    limit: BudgetLimit = Field(description=BudgetLimit.__doc__)
    soft_threshold: int = Field(
        default=80,
        ge=1,
        le=100,
        description="Percent of the limit at which the Budget warns (condition "
        "SoftLimitReached, a Warning Event, the metric stratus_budget_used_ratio).",
    )
    action: Action = Field(
        default="Block",
        description="At the limit: Block (new TrainingJob attempts wait until the window rolls "
        "over or the limit is raised) or SpotOnly (they start on spot capacity only). Running "
        "attempts are never stopped.",
    )

    @field_validator("teams", "namespaces")
    @classmethod
    def _unique(cls, values: list[str]) -> list[str]:
        if len(set(values)) != len(values):
            raise ValueError("entries must be unique")
        return values


class Amounts(ApiModel):
    """GPU-hours and money."""

    gpu_hours: float = Field(default=0.0, description="GPU-hours, spot and on-demand.")
    amount: float = Field(default=0.0, description="Money, at the price table.")


class Consumer(ApiModel):
    """One of the workloads that used the most of the Budget in this window."""

    namespace: str = Field(description="Its namespace.")
    kind: str = Field(description="TrainingJob or InferenceService.")
    name: str = Field(description="Its name.")
    team: str | None = Field(default=None, description="Its spec.team.")
    gpu_hours: float = Field(description="GPU-hours in this window.")
    amount: float = Field(description="Money in this window.")


class LedgerEntry(ApiModel):
    """A covered workload's cumulative usage (status.usage) at the window's start (`base`) and
    when last seen (`last`); its usage in the window is last - base."""

    uid: str = Field(description="The workload's uid.")
    kind: str = Field(description="TrainingJob or InferenceService.")
    namespace: str = Field(description="Its namespace.")
    name: str = Field(description="Its name.")
    team: str | None = Field(default=None, description="Its spec.team.")
    base: Amounts = Field(
        description="Cumulative usage at the period's start (or when first seen)."
    )
    last: Amounts = Field(description="Cumulative usage when last seen.")


class DayUsage(ApiModel):
    """Usage of one earlier day of a RollingDays window."""

    start: str = Field(description="The day's start (RFC 3339).")
    gpu_hours: float = Field(description="GPU-hours used that day.")
    amount: float = Field(description="Money used that day.")


class BudgetStatus(ApiModel):
    """What the operator counted. Written by the operator only."""

    window_start: str | None = Field(default=None, description="Current window's start.")
    window_end: str | None = Field(default=None, description="When it rolls over (RFC 3339).")
    used: Amounts | None = Field(default=None, description="Usage in the window.")
    remaining: float | None = Field(
        default=None, description="What is left of the limit, in the limit's unit."
    )
    percent_used: float | None = Field(default=None, description="Usage as a percent of limit.")
    currency: str | None = Field(default=None, description="Currency of the amounts.")
    top_consumers: list[Consumer] = Field(
        default_factory=list,
        description=f"The {TOP_CONSUMERS} workloads that used the most in the window.",
    )
    period_start: str | None = Field(
        default=None,
        description="Start of the period the ledger counts: the window's, or today's for a "
        "RollingDays window.",
    )
    history: list[DayUsage] = Field(
        default_factory=list,
        description="Usage of the window's earlier days (RollingDays only; at most days - 1).",
    )
    ledger: list[LedgerEntry] = Field(
        default_factory=list,
        description="Cumulative usage of covered workloads that still exist and used GPUs in "
        "the period or carry usage that can still move into it (none for a workload that has "
        f"used nothing). At most {MAX_LEDGER_ENTRIES} entries: past that the smallest "
        "consumers fold into retired and condition LedgerFull is True.",
    )
    retired: Amounts | None = Field(
        default=None,
        description="Usage in the period of workloads deleted (or no longer covered) since.",
    )
    observed_generation: int | None = Field(
        default=None, description="The spec generation this status reflects."
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready, SoftLimitReached, LimitReached, and LedgerFull once the ledger "
        "has been full.",
        json_schema_extra=CONDITIONS_LIST,
    )
