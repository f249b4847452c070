"""The usage block of a resource's status, pure: GPU-seconds already settled (ended attempts,
pods gone) kept in the status itself with what they cost when they were settled, plus what runs
now, priced by the admin's table as it is now. Money is settled as it accrues: a new price, or a
workload's gpuType edited to a cheaper entry, prices the time from then on, never the past.

The block is refreshed at most every REFRESH_SECONDS while something runs, so a long run costs
one status write per interval, not one per pod event; a change of what is settled (an attempt
ended, a pod gone) is written at once. With many workloads of a kind the interval grows
(refresh_interval), so that their refreshes together stay under MAX_REFRESHES_PER_SECOND."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stratus.conditions import parse_time, precise_timestamp
from stratus.cost.pods import MeteredPod
from stratus.cost.prices import ON_DEMAND, SPOT, Price, PriceTable

REFRESH_SECONDS = 30.0
# Refreshes of one kind's running workloads together, at most, per second: 2,000 running
# TrainingJobs refreshed every 30 s would be 67 status writes a second, and an idle operator
# busy with them (each costs it about 1% of a core per write a second, make bench found).
MAX_REFRESHES_PER_SECOND = 1.0
# Under status.usage: GPU-seconds settled so far, by capacity type (not the running ones).
ENDED = "endedGpuSeconds"
# Under status.usage: what the settled GPU-seconds cost when they were settled.
ENDED_COST = "endedCost"
HOURS_DIGITS = 6
MONEY_DIGITS = 4

Usage = dict[str, Any]


@dataclass(frozen=True)
class GpuSeconds:
    spot: float = 0.0
    on_demand: float = 0.0

    @classmethod
    def of(cls, capacity: str, seconds: float) -> GpuSeconds:
        return cls(spot=seconds) if capacity == SPOT else cls(on_demand=seconds)

    @classmethod
    def load(cls, raw: Mapping[str, Any] | None) -> GpuSeconds:
        raw = raw or {}
        return cls(float(raw.get("spot") or 0), float(raw.get("onDemand") or 0))

    def dump(self) -> dict[str, float]:
        return {"spot": self.spot, "onDemand": self.on_demand}

    def __add__(self, other: GpuSeconds) -> GpuSeconds:
        return GpuSeconds(self.spot + other.spot, self.on_demand + other.on_demand)

    def __sub__(self, other: GpuSeconds) -> GpuSeconds:
        return GpuSeconds(
            max(0.0, self.spot - other.spot), max(0.0, self.on_demand - other.on_demand)
        )

    def get(self, capacity: str) -> float:
        return self.spot if capacity == SPOT else self.on_demand

    @property
    def total(self) -> float:
        return self.spot + self.on_demand


@dataclass(frozen=True)
class Money:
    """What GPU-seconds cost, and on demand would have cost; `covers` are the settled
    GPU-seconds these figures price."""

    cost: float = 0.0
    on_demand: float = 0.0
    covers: GpuSeconds = GpuSeconds()

    @classmethod
    def of(cls, seconds: GpuSeconds, price: Price) -> Money:
        cost = (seconds.spot * price.spot + seconds.on_demand * price.on_demand) / 3600
        return cls(cost, seconds.total * price.on_demand / 3600, seconds)

    @classmethod
    def load(cls, raw: Mapping[str, Any] | None) -> Money:
        raw = raw or {}
        return cls(
            float(raw.get("cost") or 0),
            float(raw.get("onDemandCost") or 0),
            GpuSeconds.load(raw.get("gpuSeconds")),
        )

    def dump(self) -> dict[str, Any]:
        return {"cost": self.cost, "onDemandCost": self.on_demand, "gpuSeconds": self.covers.dump()}

    def __add__(self, other: Money) -> Money:
        return Money(
            self.cost + other.cost, self.on_demand + other.on_demand, self.covers + other.covers
        )


def ended(status: Mapping[str, Any]) -> GpuSeconds:
    return GpuSeconds.load((status.get("usage") or {}).get(ENDED))


def ended_cost(block: Mapping[str, Any], table: PriceTable, gpu_type: str | None) -> Money | None:
    """What the block's settled GPU-seconds cost: as kept, plus any it does not price yet at
    the current table. Those are seconds settled without a price table, or every settled second
    of a status written before ended cost was kept (a migration: priced once, at the table of
    the first write since). Without a table, what is kept (None when nothing is)."""
    kept = block.get(ENDED_COST)
    price = table.price(gpu_type)
    if price is None:
        return Money.load(kept) if kept else None
    money = Money.load(kept)
    return money + Money.of(GpuSeconds.load(block.get(ENDED)) - money.covers, price)


def settle(
    status: dict[str, Any], seconds: GpuSeconds, table: PriceTable, gpu_type: str | None
) -> None:
    """Add GPU time that will not be seen again (an attempt that ended, a pod gone) to what the
    status keeps, priced at the current table; in the same write that moves past it, so never
    twice."""
    if seconds.total <= 0:
        return
    usage = status.setdefault("usage", {})
    usage[ENDED] = (ended(status) + seconds).dump()
    if (money := ended_cost(usage, table, gpu_type)) is not None:
        usage[ENDED_COST] = money.dump()


def figures(
    total: GpuSeconds, table: PriceTable, gpu_type: str | None, settled: Money | None = None
) -> Usage:
    """The usage block for `total` GPU-seconds, without meteredAt; cost fields only with a
    price table. `settled` prices some of them already; the rest are priced at the table."""
    usage: Usage = {
        "gpuHours": {
            "spot": round(total.spot / 3600, HOURS_DIGITS),
            "onDemand": round(total.on_demand / 3600, HOURS_DIGITS),
        },
    }
    price = table.price(gpu_type)
    if price is not None:
        settled = settled or Money()
        money = settled + Money.of(total - settled.covers, price)
        cost, on_demand = money.cost, money.on_demand
        usage["gpuType"] = table.key(gpu_type)
        usage["cost"] = round(cost, MONEY_DIGITS)
        usage["onDemandCost"] = round(on_demand, MONEY_DIGITS)
        usage["savings"] = round(on_demand - cost, MONEY_DIGITS)
        usage["currency"] = table.currency
    return usage


def refresh_interval(workloads: int) -> float:
    """How often a running workload's block is refreshed, when the operator holds `workloads`
    of its kind: REFRESH_SECONDS, or longer once they would refresh more than
    MAX_REFRESHES_PER_SECOND together (each is counted as running: the upper bound)."""
    return max(REFRESH_SECONDS, workloads / MAX_REFRESHES_PER_SECOND)


def meter(
    previous: Mapping[str, Any] | None,
    status: dict[str, Any],
    running: GpuSeconds,
    table: PriceTable,
    gpu_type: str | None,
    now: dt.datetime,
    refresh: float = REFRESH_SECONDS,
) -> float | None:
    """Set status.usage from what is settled there and what runs now. `previous` is the usage
    block the status had before this pass: kept as it is while the figures have not changed,
    or while only the running time has grown for less than `refresh` seconds. The seconds
    until the block should be refreshed while something runs; None when nothing does."""
    settled = ended(status)
    money = ended_cost(status.get("usage") or {}, table, gpu_type)
    usage: Usage = {**figures(settled + running, table, gpu_type, money), ENDED: settled.dump()}
    if money is not None:
        usage[ENDED_COST] = money.dump()
    if settled.total <= 0 and running.total <= 0 and not previous:
        return None  # nothing ever ran: no block
    previous = previous or {}
    same = {k: v for k, v in previous.items() if k != "meteredAt"} == usage
    at = parse_time(previous.get("meteredAt"))
    elapsed = (now - at).total_seconds() if at else None
    wait = None if running.total <= 0 else refresh
    if same or (
        running.total > 0
        and elapsed is not None
        and 0 <= elapsed < refresh
        and previous.get(ENDED) == usage[ENDED]
        and previous.get(ENDED_COST) == usage.get(ENDED_COST)
        and previous.get("gpuType") == usage.get("gpuType")
        and previous.get("currency") == usage.get("currency")
    ):
        status["usage"] = dict(previous)
        if wait is not None and elapsed is not None and 0 <= elapsed < refresh:
            wait = refresh - elapsed
        return wait
    status["usage"] = {**usage, "meteredAt": precise_timestamp(now)}
    return wait


def meter_pods(
    previous: Mapping[str, Any] | None,
    status: dict[str, Any],
    live: tuple[MeteredPod, ...],
    gone: tuple[MeteredPod, ...],
    table: PriceTable,
    gpu_type: str | None,
    now: dt.datetime,
    known: frozenset[str] | None = None,
    refresh: float = REFRESH_SECONDS,
) -> float | None:
    """Set status.usage of pods that come and go (an InferenceService's): each write settles
    every pod's GPU time from the last meteredAt up to now, so the intervals written never
    overlap and a pod deleted later has only its time since then to add. `gone` are pods seen
    deleted since (their last state): they are settled in this write. `known` are the uids of
    the pods the last write counted: any other is counted from its start, since its start
    time (whole seconds) may fall before the last meteredAt although it was not running yet
    when that was written; None (unknown, after a restart) counts every pod from meteredAt.
    The seconds until the next refresh while a pod runs; None otherwise."""
    previous = previous or {}
    since = parse_time(previous.get("meteredAt"))
    # A meteredAt ahead of `now` (written by a build that metered on the operator's moved
    # clock) is taken as now: nothing is added up to it, and this write brings it back, so
    # metering does not wait for the real time to catch up with it.
    ahead = since is not None and since > now
    if ahead:
        since = now
    running = any(p.finished is None for p in live)
    wait = refresh if running else None
    elapsed = (now - since).total_seconds() if since else None
    if not gone and not ahead and elapsed is not None and 0 <= elapsed < refresh:
        status["usage"] = dict(previous)
        return refresh - elapsed if running else None
    added = GpuSeconds()
    for pod in (*live, *gone):
        start = since if known is None or pod.uid in known else None
        added = added + GpuSeconds.of(pod.capacity, pod.seconds(start, now))
    if added.total <= 0 and not gone and not ahead:
        if previous:
            status["usage"] = dict(previous)
        return wait
    settle(status, added, table, gpu_type)
    settled = ended(status)
    money = ended_cost(status.get("usage") or {}, table, gpu_type)
    status["usage"] = {
        **figures(settled, table, gpu_type, money),
        ENDED: settled.dump(),
        **({ENDED_COST: money.dump()} if money is not None else {}),
        "meteredAt": precise_timestamp(now),
    }
    return wait


def increments(
    old: Mapping[str, Any] | None, new: Mapping[str, Any] | None, table: PriceTable
) -> list[tuple[str, float, float | None]]:
    """What a status write added, per capacity type: (capacity, GPU-hours, cost or None without
    a price), for the counters. A shrink (a status edited by hand) adds nothing."""
    if not new:
        return []
    before = (old or {}).get("gpuHours") or {}
    after = new.get("gpuHours") or {}
    price = table.prices.get(str(new.get("gpuType")))
    added = []
    for capacity, key in ((SPOT, "spot"), (ON_DEMAND, "onDemand")):
        hours = float(after.get(key) or 0) - float(before.get(key) or 0)
        if hours > 0:
            added.append((capacity, hours, hours * price.of(capacity) if price else None))
    return added
