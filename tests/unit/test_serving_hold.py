"""Off-hours and idle reclamation in the InferenceService planner: held at the floor with an
Event, back warmUp before the window ends, a canary paused and restarted, the autoscalers left
to do the scaling, idle readings over time, the wake-up, and GPU-hours reclaimed."""

from __future__ import annotations

import datetime as dt
from typing import Any

from stratus.api.inferenceservice import InferenceServiceSpec
from stratus.podspec import Owner
from stratus.schedules.idle import GPU_UTILIZATION, Reading
from stratus.serving import planner
from stratus.serving.children import KEDA_PAUSED
from stratus.serving.labels import WAKE_ANNOTATION
from stratus.serving.revision import revision_of
from stratus.serving.views import DeploymentView, child_view

OWNER = Owner("InferenceService", "web", "ns", "uid")
# Monday 2026-11-30; off-hours every night from 20:00 to 07:00 UTC, back 10 minutes early.
EVENING = dt.datetime(2026, 11, 30, 19, 0, tzinfo=dt.UTC)
NIGHT = dt.datetime(2026, 11, 30, 22, 0, tzinfo=dt.UTC)
DAWN = dt.datetime(2026, 12, 1, 6, 50, tzinfo=dt.UTC)
NIGHTS = {
    "offHours": [{"days": ["Mon", "Tue", "Wed", "Thu", "Fri"], "start": "20:00", "end": "07:00"}],
    "warmUp": "10m",
}


def spec(image: str = "serve:1", **extra: Any) -> InferenceServiceSpec:
    return InferenceServiceSpec.model_validate(
        {
            "image": image,
            "model": {"uri": "https://m/x"},
            "replicas": {"min": 3, "max": 6},
            "resources": {"gpu": 2},
            "rollout": {"steps": [{"weight": 50, "pause": {}}, {"weight": 100}]},
            **extra,
        }
    )


def observe(
    s: InferenceServiceSpec,
    status: dict[str, Any],
    ready: dict[str, int],
    now: dt.datetime,
    sizes: dict[str, int] | None = None,
    **extra: Any,
) -> planner.Observed:
    sizes = sizes or {}
    views = tuple(DeploymentView(f"web-{r}", r, sizes.get(r, n), n) for r, n in ready.items())
    return planner.Observed(
        owner=OWNER,
        generation=extra.pop("generation", 1),
        spec=s,
        status=status,
        annotations=extra.pop("annotations", {}),
        deployments=views,
        staging_failures=(),
        now=now,
        staging_image="img",
        **extra,
    )


def sized(plan: planner.Plan) -> dict[str, int]:
    applied = {
        m["metadata"]["name"]: m["spec"]["replicas"]
        for m in plan.apply
        if m["kind"] == "Deployment"
    }
    return {**applied, **dict(plan.scale)}


def reasons(plan: planner.Plan) -> list[str]:
    return [e.reason for e in plan.events]


def running(s: InferenceServiceSpec, now: dt.datetime) -> tuple[dict[str, Any], str]:
    """A stable revision serving at full size at `now`."""
    rev = revision_of(s)
    status = planner.plan(observe(s, {}, {}, now)).status
    status = planner.plan(observe(s, status, {rev: 3}, now)).status
    return status, rev


def test_off_hours_hold_the_service_at_its_floor_and_say_so() -> None:
    s = spec(schedule={**NIGHTS, "replicas": 1})
    status, rev = running(s, EVENING)
    assert status["schedule"]["reason"] == "OnHours"
    assert status["schedule"]["nextChange"] == "2026-11-30T20:00:00Z"
    assert status["schedule"]["nextReplicas"] == 1
    night = planner.plan(observe(s, status, {rev: 3}, NIGHT))
    assert sized(night) == {f"web-{rev}": 1}
    assert reasons(night) == ["OffHours"]
    record = night.status["schedule"]
    assert (record["offHours"], record["held"], record["replicas"]) == (True, True, 1)
    assert record["nextChange"] == "2026-12-01T06:50:00Z"
    assert record["nextReplicas"] == 3
    assert night.requeue_after is not None
    assert night.requeue_after <= 60
    # The floor ready: healthy, at the floor.
    again = planner.plan(observe(s, night.status, {rev: 1}, NIGHT + dt.timedelta(minutes=1)))
    assert again.status["phase"] == "Healthy"
    assert reasons(again) == []
    assert sized(again) == {}


def test_at_zero_the_phase_is_scaled_down_and_it_comes_back_before_the_window_ends() -> None:
    s = spec(schedule=NIGHTS)
    status, rev = running(s, EVENING)
    night = planner.plan(observe(s, status, {rev: 3}, NIGHT))
    assert sized(night) == {f"web-{rev}": 0}
    held = planner.plan(observe(s, night.status, {rev: 0}, NIGHT)).status
    assert held["phase"] == "ScaledDown"
    healthy = next(c for c in held["conditions"] if c["type"] == "Healthy")
    assert (healthy["status"], healthy["reason"]) == ("False", "OffHours")
    dawn = planner.plan(observe(s, held, {rev: 0}, DAWN))
    assert sized(dawn) == {f"web-{rev}": 3}
    assert reasons(dawn) == ["WarmUp"]
    assert dawn.status["schedule"]["reason"] == "WarmUp"
    assert dawn.status["schedule"]["nextChange"] == "2026-12-01T20:00:00Z"


def test_gpu_hours_reclaimed_count_the_replicas_taken_away_while_held() -> None:
    s = spec(schedule={**NIGHTS, "replicas": 1})
    status, rev = running(s, EVENING)
    at = NIGHT
    status = planner.plan(observe(s, status, {rev: 3}, at)).status
    assert status["schedule"]["heldFrom"] == 3
    at += dt.timedelta(hours=2)
    status = planner.plan(observe(s, status, {rev: 1}, at)).status
    # 2 replicas taken away, 2 GPUs each, for 2 hours.
    assert status["schedule"]["gpuHoursReclaimed"] == 8.0
    status = planner.plan(observe(s, status, {rev: 1}, DAWN)).status
    assert status["schedule"]["gpuHoursReclaimed"] == round(2 * 2 * (8 + 50 / 60), 6)
    assert "reclaimedAt" not in status["schedule"]


def test_a_canary_is_paused_while_held_and_its_step_starts_over() -> None:
    old, new = spec("serve:1", schedule=NIGHTS), spec("serve:2", schedule=NIGHTS)
    status, stable = running(old, EVENING)
    canary = revision_of(new)
    status = planner.plan(observe(new, status, {stable: 3}, EVENING)).status
    assert status["canaryRevision"] == canary
    annotations = {"stratus.dev/promote": "1"}
    night = planner.plan(
        observe(new, status, {stable: 3, canary: 2}, NIGHT, annotations=annotations)
    )
    assert sized(night) == {f"web-{stable}": 0, f"web-{canary}": 0}
    # Paused where it stands: the promotion waits for the morning.
    assert night.status["currentStep"] == 0
    assert "stratus.dev/promote" not in night.status["handledCommands"]
    dawn = planner.plan(observe(new, night.status, {stable: 0, canary: 0}, DAWN))
    assert dawn.status["stepStartedAt"].startswith("2026-12-01T06:50:00")
    assert dawn.status["canaryUnreadySince"].startswith("2026-12-01T06:50:00")
    assert sized(dawn)[f"web-{canary}"] == 2
    # The command given during the night is taken once the hold is over.
    later = DAWN + dt.timedelta(seconds=5)
    promoted = planner.plan(
        observe(new, dawn.status, {stable: 3, canary: 2}, later, annotations=annotations)
    )
    assert promoted.status["currentStep"] == 1


def test_an_hpa_keeps_the_floor_itself_and_is_not_fought() -> None:
    s = spec(schedule={**NIGHTS, "replicas": 1}, autoscaling={"metric": "cpu", "target": 70})
    status, rev = running(s, EVENING)
    night = planner.plan(observe(s, status, {rev: 5}, NIGHT))
    (hpa,) = [m for m in night.apply if m["kind"] == "HorizontalPodAutoscaler"]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 1)
    assert sized(night) == {}  # the HPA scales the Deployment, not the operator
    assert night.status["schedule"]["heldFrom"] == 5
    dawn = planner.plan(observe(s, night.status, {rev: 1}, DAWN, children=(child_view(hpa),)))
    (back,) = [m for m in dawn.apply if m["kind"] == "HorizontalPodAutoscaler"]
    assert (back["spec"]["minReplicas"], back["spec"]["maxReplicas"]) == (3, 6)


def test_at_zero_an_hpa_stops_and_the_operator_brings_the_deployment_back() -> None:
    s = spec(schedule=NIGHTS, autoscaling={"metric": "cpu", "target": 70})
    status, rev = running(s, EVENING)
    night = planner.plan(observe(s, status, {rev: 4}, NIGHT))
    assert night.scale == [(f"web-{rev}", 0)]
    (hpa,) = [m for m in night.apply if m["kind"] == "HorizontalPodAutoscaler"]
    assert hpa["spec"]["minReplicas"] == 3  # an HPA does not scale from zero
    dawn = planner.plan(observe(s, night.status, {rev: 0}, DAWN, children=(child_view(hpa),)))
    assert dawn.scale == [(f"web-{rev}", 3)]


def test_woken_at_zero_in_off_hours_an_hpa_service_is_brought_to_its_floor() -> None:
    auto = {"metric": "cpu", "target": 70}
    s = spec(schedule={**NIGHTS, "replicas": 1}, autoscaling=auto, idle=IDLE)
    status, rev = running(s, EVENING)
    status = planner.plan(observe(s, status, {rev: 3}, EVENING, idle=COLD)).status
    idle = planner.plan(observe(s, status, {rev: 3}, EVENING + dt.timedelta(minutes=30), idle=COLD))
    assert idle.scale == [(f"web-{rev}", 0)]
    wake = {WAKE_ANNOTATION: "t"}
    woken = planner.plan(observe(s, idle.status, {rev: 0}, NIGHT, annotations=wake))
    assert woken.status["schedule"]["replicas"] == 1
    # An HPA does not act on a Deployment at zero: the operator brings it to the floor once.
    assert woken.scale == [(f"web-{rev}", 1)]
    up = planner.plan(observe(s, woken.status, {rev: 1}, NIGHT, annotations=wake))
    assert up.scale == []


def test_keda_is_paused_at_the_floor_by_its_own_annotation() -> None:
    auto = {"metric": "prometheus", "target": 10, "query": "sum(rate(x[1m]))"}
    s = spec(schedule=NIGHTS, autoscaling=auto)
    status, rev = running(s, EVENING)
    night = planner.plan(observe(s, status, {rev: 4}, NIGHT, keda=True))
    (scaled,) = [m for m in night.apply if m["kind"] == "ScaledObject"]
    assert scaled["metadata"]["annotations"][KEDA_PAUSED] == "0"
    assert night.scale == []
    dawn = planner.plan(observe(s, night.status, {rev: 0}, DAWN, keda=True))
    (resumed,) = [m for m in dawn.apply if m["kind"] == "ScaledObject"]
    assert KEDA_PAUSED not in (resumed["metadata"].get("annotations") or {})


# -- idle ----------------------------------------------------------------------------------------
IDLE = {"after": "30m", "gpuUtilizationBelow": 10}
COLD = (Reading(GPU_UTILIZATION, (3.0,)),)
HOT = (Reading(GPU_UTILIZATION, (55.0,)),)


def test_idle_for_after_scales_to_zero_with_an_event() -> None:
    s = spec(idle=IDLE)
    status, rev = running(s, EVENING)
    first = planner.plan(observe(s, status, {rev: 3}, EVENING, idle=COLD))
    assert first.status["schedule"]["idleSince"].startswith("2026-11-30T19:00:00")
    assert first.status["schedule"]["reason"] == "Idle"
    assert first.status["schedule"]["nextChange"] == "2026-11-30T19:30:00Z"
    assert sized(first) == {}
    # No reading in a pass keeps what was seen.
    later = EVENING + dt.timedelta(minutes=20)
    kept = planner.plan(observe(s, first.status, {rev: 3}, later)).status
    assert kept["schedule"]["idleSince"] == first.status["schedule"]["idleSince"]
    done = EVENING + dt.timedelta(minutes=30)
    zero = planner.plan(observe(s, kept, {rev: 3}, done, idle=COLD))
    assert sized(zero) == {f"web-{rev}": 0}
    assert reasons(zero) == ["IdleScaledToZero"]
    assert zero.status["schedule"]["reason"] == "IdleScaledToZero"
    held = planner.plan(observe(s, zero.status, {rev: 0}, done + dt.timedelta(hours=1))).status
    assert held["phase"] == "ScaledDown"
    assert held["schedule"]["gpuHoursReclaimed"] == 6.0  # 3 replicas x 2 GPUs x 1 hour


def test_a_busy_reading_starts_the_idle_clock_over() -> None:
    s = spec(idle=IDLE)
    status, rev = running(s, EVENING)
    status = planner.plan(observe(s, status, {rev: 3}, EVENING, idle=COLD)).status
    later = EVENING + dt.timedelta(minutes=29)
    status = planner.plan(observe(s, status, {rev: 3}, later, idle=HOT)).status
    assert "idleSince" not in status["schedule"]
    status = planner.plan(
        observe(s, status, {rev: 3}, later + dt.timedelta(minutes=2), idle=COLD)
    ).status
    assert status["schedule"]["held"] is False


def test_an_idle_service_stays_down_until_woken() -> None:
    s = spec(idle=IDLE)
    status, rev = running(s, EVENING)
    status = planner.plan(observe(s, status, {rev: 3}, EVENING, idle=COLD)).status
    status = planner.plan(
        observe(s, status, {rev: 3}, EVENING + dt.timedelta(minutes=30), idle=COLD)
    ).status
    # A busy reading cannot come (no pods), and none wakes it.
    later = EVENING + dt.timedelta(hours=3)
    assert sized(planner.plan(observe(s, status, {rev: 0}, later, idle=HOT))) == {}
    woken = planner.plan(observe(s, status, {rev: 0}, later, annotations={WAKE_ANNOTATION: "t1"}))
    assert sized(woken) == {f"web-{rev}": 3}
    assert reasons(woken) == ["WokenUp"]
    assert woken.status["handledCommands"][WAKE_ANNOTATION] == "t1"
    # The same value does not wake it again, and it is idle afresh only after `after`.
    again = planner.plan(
        observe(s, woken.status, {rev: 3}, later, annotations={WAKE_ANNOTATION: "t1"}, idle=COLD)
    )
    assert again.status["schedule"]["held"] is False
    assert again.status["schedule"]["idleSince"].startswith("2026-11-30T22:00:00")


def test_idle_is_not_judged_in_the_warm_up_before_on_hours() -> None:
    s = spec(schedule={**NIGHTS, "replicas": 1}, idle={**IDLE, "after": "5m"})
    status, rev = running(s, EVENING)
    night = planner.plan(observe(s, status, {rev: 3}, NIGHT, idle=COLD)).status
    dawn = planner.plan(observe(s, night, {rev: 1}, DAWN, idle=COLD)).status
    assert dawn["schedule"]["reason"] == "WarmUp"
    # No traffic in the warm-up by design: after (5m) is shorter than warmUp (10m).
    late = planner.plan(observe(s, dawn, {rev: 3}, DAWN + dt.timedelta(minutes=8), idle=COLD))
    assert late.status["schedule"]["held"] is False
    assert "idleSince" not in late.status["schedule"]
    on = planner.plan(observe(s, late.status, {rev: 3}, DAWN + dt.timedelta(minutes=10), idle=COLD))
    assert on.status["schedule"]["idleSince"].startswith("2026-12-01T07:00:00")


def test_after_a_wake_the_idle_clock_starts_once_a_replica_is_ready() -> None:
    s = spec(idle=IDLE)
    status, rev = running(s, EVENING)
    status = planner.plan(observe(s, status, {rev: 3}, EVENING, idle=COLD)).status
    status = planner.plan(
        observe(s, status, {rev: 3}, EVENING + dt.timedelta(minutes=30), idle=COLD)
    ).status
    woken = planner.plan(observe(s, status, {rev: 0}, NIGHT, annotations={WAKE_ANNOTATION: "t"}))
    loading = NIGHT + dt.timedelta(minutes=20)
    still = planner.plan(observe(s, woken.status, {rev: 0}, loading, sizes={rev: 3}, idle=COLD))
    assert "idleSince" not in still.status["schedule"]
    assert still.status["schedule"]["waking"] is True
    ready = planner.plan(observe(s, still.status, {rev: 1}, loading, sizes={rev: 3}, idle=COLD))
    assert ready.status["schedule"]["waking"] is False
    assert ready.status["schedule"]["idleSince"].startswith("2026-11-30T22:20:00")


def test_a_new_spec_wakes_an_idle_service() -> None:
    s = spec(idle=IDLE)
    status, rev = running(s, EVENING)
    status = planner.plan(observe(s, status, {rev: 3}, EVENING, idle=COLD)).status
    status = planner.plan(
        observe(s, status, {rev: 3}, EVENING + dt.timedelta(minutes=30), idle=COLD)
    ).status
    assert status["schedule"]["held"]
    woken = planner.plan(observe(s, status, {rev: 0}, NIGHT, generation=2))
    assert reasons(woken) == ["WokenUp"]
    assert sized(woken) == {f"web-{rev}": 3}


def test_without_a_schedule_nothing_is_recorded() -> None:
    s = spec()
    status, _ = running(s, EVENING)
    assert "schedule" not in status
