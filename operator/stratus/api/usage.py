"""Usage: GPU-hours and their cost, shown in the status of both resources."""

from __future__ import annotations

from pydantic import Field

from stratus.api.common import ApiModel


class GpuHours(ApiModel):
    """GPU-hours by the capacity type the pods ran on."""

    spot: float = Field(default=0.0, ge=0, description="GPU-hours on spot capacity.")
    on_demand: float = Field(default=0.0, ge=0, description="GPU-hours on on-demand capacity.")


class GpuSeconds(ApiModel):
    """GPU-seconds by capacity type."""

    spot: float = Field(default=0.0, ge=0, description="On spot capacity.")
    on_demand: float = Field(default=0.0, ge=0, description="On on-demand capacity.")


class EndedCost(ApiModel):
    """What settled GPU time cost, priced when it was settled."""

    cost: float = Field(default=0.0, ge=0, description="At the price table of then.")
    on_demand_cost: float = Field(
        default=0.0, ge=0, description="The same time at the on-demand prices of then."
    )
    gpu_seconds: GpuSeconds = Field(
        default_factory=GpuSeconds,
        description="The settled GPU-seconds these figures price (any others are priced at the "
        "next write, at the table of then).",
    )


class Usage(ApiModel):
    """GPU time since the resource was created, the running attempt or live pods included up to
    meteredAt: from when each pod's containers started running to when they stopped, times its
    GPUs. Each hour is priced once: ended time when it was settled, the running time at the
    current table. The cost fields are absent when the admin set no price table (chart value
    cost.prices)."""

    gpu_hours: GpuHours = Field(default_factory=GpuHours, description=GpuHours.__doc__)
    cost: float | None = Field(
        default=None,
        description="What these GPU-hours cost at the admin's price table (spot hours at the "
        "spot price, on-demand hours at the on-demand price); absent without a price table.",
    )
    on_demand_cost: float | None = Field(
        default=None,
        description="What the same GPU-hours would cost all on demand; absent without a price "
        "table.",
    )
    savings: float | None = Field(
        default=None,
        description="onDemandCost - cost: what running on spot saved; absent without a price "
        "table.",
    )
    currency: str | None = Field(
        default=None, description="Currency of the cost fields (ISO 4217, e.g. USD)."
    )
    gpu_type: str | None = Field(
        default=None,
        description="The price-table entry used: the workload's resources.gpuType when the "
        "table names it, else default.",
    )
    metered_at: str | None = Field(
        default=None,
        description="When these figures were computed (RFC 3339, real time: the pods' start "
        "and end times are real).",
    )
    ended_gpu_seconds: GpuSeconds = Field(
        default_factory=GpuSeconds,
        description="The operator's ledger: GPU-seconds of ended attempts (TrainingJob) or of "
        "pods that ended or went away (InferenceService), which gpuHours adds the running ones "
        "to.",
    )
    ended_cost: EndedCost | None = Field(
        default=None,
        description="The operator's ledger: what endedGpuSeconds cost when they were settled, "
        "so a later price or gpuType never prices them again; absent without a price table.",
    )
