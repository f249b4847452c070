"""The admin's price table: a price per GPU-hour by GPU type and capacity type, and a currency.
Read from STRATUS_PRICES (JSON, chart value cost.prices) and STRATUS_CURRENCY (cost.currency)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from stratus.api.common import LABEL_VALUE_PATTERN

# The entry for a workload that names no gpuType, or one the table does not list.
DEFAULT = "default"
# What the metrics' gpu_type label says when there is no price table.
OTHER = "other"
SPOT = "spot"
ON_DEMAND = "on-demand"
CAPACITY_TYPES = (SPOT, ON_DEMAND)
CURRENCY_PATTERN = r"^[A-Z]{3}$"
# Keys the table may hold: GPU products as the node label nvidia.com/gpu.product writes them.
MAX_ENTRIES = 64


class PriceError(ValueError):
    pass


@dataclass(frozen=True)
class Price:
    """Per GPU-hour, in the table's currency."""

    spot: float
    on_demand: float

    def of(self, capacity: str) -> float:
        return self.spot if capacity == SPOT else self.on_demand


@dataclass(frozen=True)
class PriceTable:
    currency: str = "USD"
    # Empty: no table; usage then shows GPU-hours only.
    prices: Mapping[str, Price] = field(default_factory=dict)

    def key(self, gpu_type: str | None) -> str:
        """The table's entry for a workload's gpuType: its own when listed, else default; with
        no table, OTHER."""
        if not self.prices:
            return OTHER
        return gpu_type if gpu_type and gpu_type in self.prices else DEFAULT

    def price(self, gpu_type: str | None) -> Price | None:
        return self.prices.get(self.key(gpu_type))


def parse(prices: str | None, currency: str | None) -> PriceTable:
    """The table from the two variables' values; PriceError names what is wrong."""
    currency = currency or "USD"
    if not re.fullmatch(CURRENCY_PATTERN, currency):
        raise PriceError(f"STRATUS_CURRENCY: {currency!r} is not a currency code such as USD")
    if not prices or not prices.strip():
        return PriceTable(currency)
    try:
        raw = json.loads(prices)
    except ValueError as exc:
        raise PriceError(f"STRATUS_PRICES: not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise PriceError("STRATUS_PRICES: must map GPU types to {spot, onDemand}")
    if len(raw) > MAX_ENTRIES:
        raise PriceError(f"STRATUS_PRICES: more than {MAX_ENTRIES} entries")
    if raw and DEFAULT not in raw:
        raise PriceError(
            f"STRATUS_PRICES: needs a {DEFAULT!r} entry, the price of a workload that names no "
            "gpuType or one the table does not list"
        )
    table = {}
    for key, entry in raw.items():
        if not re.fullmatch(LABEL_VALUE_PATTERN, key) or not 0 < len(key) <= 63:
            raise PriceError(f"STRATUS_PRICES: {key!r} is not a GPU type (a label value)")
        if not isinstance(entry, dict) or set(entry) != {"spot", "onDemand"}:
            raise PriceError(f"STRATUS_PRICES: {key}: must be {{spot, onDemand}} and no more")
        values = [entry["spot"], entry["onDemand"]]
        for value in values:
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value < 0
            ):
                raise PriceError(
                    f"STRATUS_PRICES: {key}: {value!r} is not a price (a number, at least 0)"
                )
        table[key] = Price(float(values[0]), float(values[1]))
    return PriceTable(currency, table)
