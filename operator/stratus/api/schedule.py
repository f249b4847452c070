"""When workloads may run: an InferenceService's off-hours (held at a floor, back before they
end) and idle reclamation, a TrainingJob's start window. Shared by both resources."""

from __future__ import annotations

import zoneinfo
from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, Field, field_validator
from pydantic.config import JsonDict

from stratus.api.common import ApiModel, Duration, Rule, min_duration_rule

Day = Literal["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
DAYS: tuple[Day, ...] = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
# A wall-clock time, 00:00 to 23:59.
CLOCK_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
# An IANA zone's shape (Europe/Berlin, America/Argentina/Buenos_Aires, UTC, Etc/GMT+5); whether
# it exists is judged by the operator's zoneinfo database, which the API server lacks.
TIME_ZONE_PATTERN = r"^[A-Za-z][-A-Za-z0-9_+]*(/[-A-Za-z0-9_+]+){0,2}$"
SET_LIST: JsonDict = {"x-kubernetes-list-type": "set"}
# Idle is judged over at least this long: a shorter one would scale a service down between two
# requests.
MIN_IDLE_AFTER = "1m"


def _zone(name: str) -> str:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"timeZone {name!r} is not an IANA time zone (such as Europe/Berlin or UTC)"
        ) from exc
    return name


TimeZone = Annotated[str, Field(pattern=TIME_ZONE_PATTERN, max_length=64), AfterValidator(_zone)]


class Window(ApiModel):
    """A weekly window: on each of `days`, from `start` to `end`, wall-clock time in the time
    zone. An end before the start crosses midnight: it ends the next day (Fri 20:00-07:00 ends
    on Saturday morning); an end equal to the start is a whole day (Sat 00:00-00:00)."""

    days: list[Day] = Field(
        min_length=1,
        max_length=7,
        description="Days the window starts on: Mon, Tue, Wed, Thu, Fri, Sat, Sun.",
        json_schema_extra=SET_LIST,
    )
    start: str = Field(pattern=CLOCK_PATTERN, description="Start, HH:MM (24-hour clock).")
    end: str = Field(
        pattern=CLOCK_PATTERN,
        description="End, HH:MM; at or before the start it is on the next day.",
    )

    @field_validator("days")
    @classmethod
    def _unique(cls, days: list[Day]) -> list[Day]:
        if len(set(days)) != len(days):
            raise ValueError("days must not repeat")
        return days


TIME_ZONE_DESCRIPTION = (
    "IANA time zone the times are read in (for example Europe/Berlin); daylight saving is "
    "followed, so a window keeps its wall-clock times all year. Default UTC."
)


class ServingSchedule(ApiModel):
    """Off-hours: recurring windows in which the service is held at a floor (scale to zero by
    default), for non-production services. It comes back warmUp before each window ends, so it
    is ready when on-hours begin."""

    off_hours: list[Window] = Field(
        min_length=1,
        max_length=32,
        description="Windows of off-hours; overlapping or touching windows join into one.",
    )
    time_zone: TimeZone = Field(default="UTC", description=TIME_ZONE_DESCRIPTION)
    replicas: int = Field(
        default=0,
        ge=0,
        le=1000,
        description="Replicas of the stable revision during off-hours (the floor), below "
        "replicas.min; 0 scales to zero.",
    )
    warm_up: Duration = Field(
        default="10m",
        description="How long before the off-hours end the service is scaled back up (its pods "
        "scheduled, the model staged and loaded), so it is ready when on-hours begin.",
    )


class StartWindow(Window):
    """Attempts start only inside this window (cheaper hours, cleaner energy)."""

    time_zone: TimeZone = Field(default="UTC", description=TIME_ZONE_DESCRIPTION)


class TrainingSchedule(ApiModel):
    """When attempts may start. A running attempt is never stopped by it."""

    start_window: StartWindow = Field(description=StartWindow.__doc__)


class Idle(ApiModel):
    """Idle reclamation, opt-in: when every signal given says idle for `after`, the service is
    scaled to zero (Event IdleScaledToZero) and stays there until woken: `stratus resume
    infs/NAME` (the annotation stratus.dev/wake), or a change to the spec."""

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="has(self.requestsQuery) || has(self.gpuUtilizationBelow)",
            message="give requestsQuery, gpuUtilizationBelow or both",
            field_path=".requestsQuery",
            check=lambda i: i.requests_query is not None or i.gpu_utilization_below is not None,
        ),
        min_duration_rule("after", MIN_IDLE_AFTER, lambda i: i.after),
    )

    after: Duration = Field(
        description=f"How long the service must be idle before it is scaled to zero; at least "
        f"{MIN_IDLE_AFTER}."
    )
    requests_query: str | None = Field(
        default=None,
        min_length=1,
        max_length=4096,
        description="PromQL for the requests the service gets, for example "
        'sum(rate(http_requests_total{namespace="{{namespace}}",service="{{name}}"}[5m])); '
        "{{name}} and {{namespace}} are replaced. Idle while every series it returns is 0; "
        "no data, or an error, is never idle.",
    )
    gpu_utilization_below: int | None = Field(
        default=None,
        ge=1,
        le=100,
        description="Idle while every GPU of the service's pods is busy less than this percent: "
        "DCGM_FI_DEV_GPU_UTIL from NVIDIA's DCGM exporter, by its namespace and pod labels "
        "(its Kubernetes mode; scraped with honorLabels). No series is never idle.",
    )
    prometheus_address: str | None = Field(
        default=None,
        pattern=r"^https?://",
        max_length=2048,
        description="Prometheus to query: one of the addresses the cluster admin gave the "
        "operator, its default when absent; any other is refused (Healthy=False, reason "
        "PrometheusAddressNotAllowed).",
    )


class ScheduleStatus(ApiModel):
    """Off-hours and idle reclamation as the operator applies them."""

    off_hours: bool = Field(default=False, description="Inside an off-hours window now.")
    held: bool = Field(
        default=False, description="The replicas are held at the floor now (or at zero, idle)."
    )
    reason: str = Field(
        default="",
        description="OnHours, OffHours, WarmUp (off-hours, back up before they end), "
        "IdleScaledToZero, or Idle (idle, not yet for long enough).",
    )
    message: str = Field(default="", description="The state, for humans.")
    replicas: int | None = Field(default=None, description="Replicas held at, while held.")
    next_change: str | None = Field(
        default=None,
        description="When the schedule next changes the replicas (RFC 3339): the next hold, "
        "or the scale-up warmUp before the off-hours end.",
    )
    next_replicas: int | None = Field(
        default=None,
        description="The stable's replicas after that change: the floor, or replicas.min.",
    )
    held_since: str | None = Field(default=None, description="Since when held (RFC 3339).")
    held_from: int | None = Field(
        default=None, description="The stable's replicas before the hold, which it returns to."
    )
    idle_since: str | None = Field(
        default=None, description="Since when every idle signal has said idle (RFC 3339)."
    )
    waking: bool = Field(
        default=False,
        description="Scaling back up after a hold or a wake: idle is not judged until the "
        "stable revision has a ready replica again.",
    )
    gpu_hours_reclaimed: float = Field(
        default=0.0,
        description="GPU-hours not spent because of holds, off-hours and idle: the replicas "
        "taken away times their GPUs times the time held, the current hold included up to "
        "reclaimedAt.",
    )
    reclaimed_at: str | None = Field(
        default=None, description="When gpuHoursReclaimed was last brought up to date."
    )
