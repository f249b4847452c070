"""Weekly windows without a cluster: midnight crossing, time zones, daylight saving, warm-up,
the TrainingJob start-window gate and the idle judgement."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from pydantic import ValidationError

from stratus.api.inferenceservice import InferenceServiceSpec
from stratus.api.schedule import DAYS, Idle, ServingSchedule, StartWindow
from stratus.api.trainingjob import TrainingJobSpec
from stratus.podspec import Owner
from stratus.schedules import gate, offhours, windows
from stratus.schedules.idle import GPU_UTILIZATION, REQUESTS, Reading, gpu_query, judge
from stratus.training import planner

UTC = dt.UTC


def at(text: str) -> dt.datetime:
    """A UTC moment, 2026-...: '2026-11-30 19:00'."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def schedule(**fields: Any) -> ServingSchedule:
    return ServingSchedule.model_validate(
        {
            "offHours": [
                {"days": ["Mon", "Tue", "Wed", "Thu", "Fri"], "start": "20:00", "end": "07:00"}
            ],
            **fields,
        }
    )


def test_a_window_ending_before_its_start_crosses_midnight() -> None:
    night = schedule(warmUp="0s")
    # 2026-11-30 is a Monday.
    before = offhours.off_hours(night, at("2026-11-30 19:59"))
    assert (before.off_hours, before.held, before.next_change) == (
        False,
        False,
        at("2026-11-30 20:00"),
    )
    inside = offhours.off_hours(night, at("2026-12-01 03:00"))
    assert inside.held
    assert inside.next_change == at("2026-12-01 07:00")
    assert not offhours.off_hours(night, at("2026-12-01 07:00")).held


def test_friday_night_runs_into_saturday_and_the_weekend_stays_on() -> None:
    night = schedule(warmUp="0s")
    # Friday 2026-12-04 20:00 to Saturday 07:00; no window starts on the weekend.
    assert offhours.off_hours(night, at("2026-12-05 06:59")).held
    weekend = offhours.off_hours(night, at("2026-12-05 12:00"))
    assert not weekend.held
    assert weekend.next_change == at("2026-12-07 20:00")


def test_touching_windows_join_into_one_weekend() -> None:
    weekend = ServingSchedule.model_validate(
        {
            "offHours": [
                {"days": ["Fri"], "start": "18:00", "end": "00:00"},
                {"days": ["Sat", "Sun"], "start": "00:00", "end": "00:00"},
                {"days": ["Mon"], "start": "00:00", "end": "08:00"},
            ],
            "warmUp": "30m",
        }
    )
    state = offhours.off_hours(weekend, at("2026-12-05 12:00"))
    assert state.held
    assert state.ends == at("2026-12-07 08:00")
    assert state.next_change == at("2026-12-07 07:30")


def test_windows_follow_the_time_zone() -> None:
    berlin = schedule(timeZone="Europe/Berlin", warmUp="0s")
    # 20:00 in Berlin in winter is 19:00 UTC.
    assert offhours.off_hours(berlin, at("2026-11-30 19:00")).held
    assert not offhours.off_hours(berlin, at("2026-11-30 18:59")).held
    tokyo = schedule(timeZone="Asia/Tokyo", warmUp="0s")
    # Monday 20:00 in Tokyo is Monday 11:00 UTC.
    assert offhours.off_hours(tokyo, at("2026-11-30 11:00")).held


def test_daylight_saving_keeps_the_wall_clock() -> None:
    berlin = ServingSchedule.model_validate(
        {
            "offHours": [{"days": ["Sat"], "start": "20:00", "end": "07:00"}],
            "timeZone": "Europe/Berlin",
            "warmUp": "0s",
        }
    )
    # 2026-10-24 (Sat) 20:00 CEST = 18:00 UTC; clocks go back that night; 07:00 CET = 06:00 UTC.
    autumn = offhours.off_hours(berlin, at("2026-10-24 18:00"))
    assert autumn.held
    assert autumn.ends == at("2026-10-25 06:00")
    # 2026-03-28 (Sat) 20:00 CET = 19:00 UTC; clocks go forward; 07:00 CEST = 05:00 UTC.
    spring = offhours.off_hours(berlin, at("2026-03-28 19:00"))
    assert spring.held
    assert spring.ends == at("2026-03-29 05:00")
    assert not offhours.off_hours(berlin, at("2026-03-29 05:00")).held


def test_a_time_skipped_by_daylight_saving_is_read_with_the_offset_before() -> None:
    window = StartWindow.model_validate(
        {"days": ["Sun"], "start": "02:30", "end": "04:00", "timeZone": "Europe/Berlin"}
    )
    (opens, closes), *_ = [
        i
        for i in windows.occurrences([window], window.time_zone, at("2026-03-29 00:00"))
        if i[0].date() == dt.date(2026, 3, 29)
    ]
    # 02:30 does not exist that night: read as 02:30 CET, 01:30 UTC (03:30 CEST).
    assert (opens, closes) == (at("2026-03-29 01:30"), at("2026-03-29 02:00"))


def test_warm_up_brings_the_service_back_before_the_window_ends() -> None:
    night = schedule(warmUp="15m")
    warming = offhours.off_hours(night, at("2026-12-01 06:50"))
    assert warming.off_hours
    assert not warming.held
    assert warming.ends == at("2026-12-01 07:00")
    assert warming.next_change == at("2026-12-01 20:00")
    held = offhours.off_hours(night, at("2026-12-01 06:44"))
    assert held.held
    assert held.next_change == at("2026-12-01 06:45")


def test_a_warm_up_longer_than_the_window_never_holds() -> None:
    short = ServingSchedule.model_validate(
        {"offHours": [{"days": ["Mon"], "start": "12:00", "end": "12:30"}], "warmUp": "1h"}
    )
    state = offhours.off_hours(short, at("2026-11-30 12:10"))
    assert state.off_hours
    assert not state.held


def test_windows_that_cover_every_hour_have_no_next_change() -> None:
    always = ServingSchedule.model_validate(
        {
            "offHours": [
                {"days": list(DAYS), "start": "06:00", "end": "06:00"},
            ],
            "warmUp": "0s",
        }
    )
    state = offhours.off_hours(always, at("2026-11-30 12:00"))
    assert state.held
    assert state.next_change is None


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"timeZone": "Mars/Olympus_Mons"}, "timeZone"),
        ({"offHours": [{"days": ["Mon"], "start": "25:00", "end": "07:00"}]}, "start"),
        ({"offHours": [{"days": ["Mon"], "start": "07:00", "end": "7:00"}]}, "end"),
        ({"offHours": [{"days": ["Mon", "Mon"], "start": "20:00", "end": "07:00"}]}, "days"),
        ({"offHours": [{"days": ["Monday"], "start": "20:00", "end": "07:00"}]}, "days"),
        ({"offHours": []}, "offHours"),
    ],
)
def test_bad_schedules_are_refused_naming_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as refused:
        schedule(**change)
    assert field in str(refused.value)


def test_an_unknown_time_zone_is_refused_in_words() -> None:
    with pytest.raises(ValidationError, match="timeZone 'Europe/Atlantis' is not an IANA"):
        schedule(timeZone="Europe/Atlantis")


def test_the_floor_must_be_below_replicas_min() -> None:
    base = {"image": "s:1", "model": {"uri": "https://m/x"}, "replicas": {"min": 2, "max": 4}}
    ok = {"offHours": [{"days": ["Mon"], "start": "20:00", "end": "07:00"}], "replicas": 1}
    InferenceServiceSpec.model_validate({**base, "schedule": ok})
    with pytest.raises(ValidationError, match=r"schedule\.replicas: the off-hours floor"):
        InferenceServiceSpec.model_validate({**base, "schedule": {**ok, "replicas": 2}})


# -- the start-window gate -----------------------------------------------------------------------
def observed(now: dt.datetime, window: dict[str, Any] | None) -> planner.Observed:
    raw: dict[str, Any] = {"image": "train:1"}
    if window is not None:
        raw["schedule"] = {"startWindow": window}
    return planner.Observed(
        owner=Owner("TrainingJob", "t", "ns", "uid"),
        generation=1,
        spec=TrainingJobSpec.model_validate(raw),
        spec_error=None,
        status={},
        jobs=(),
        pods=(),
        now=now,
    )


NIGHTS = {
    "days": ["Mon", "Tue", "Wed", "Thu", "Fri"],
    "start": "22:00",
    "end": "06:00",
    "timeZone": "Europe/Berlin",
}


def test_the_gate_holds_outside_the_window_until_it_opens() -> None:
    hold = gate.start_window(observed(at("2026-11-30 12:00"), NIGHTS))
    assert hold is not None
    assert hold.reason == "OutsideStartWindow"
    # Monday 22:00 in Berlin is 21:00 UTC: nine hours away.
    assert hold.retry_after == 9 * 3600
    assert "opens at 2026-11-30 22:00 CET" in hold.message
    assert not hold.spot_only


def test_the_gate_lets_an_attempt_start_inside_the_window() -> None:
    assert gate.start_window(observed(at("2026-11-30 21:00"), NIGHTS)) is None
    assert gate.start_window(observed(at("2026-12-01 04:59"), NIGHTS)) is None
    assert gate.start_window(observed(at("2026-12-01 12:00"), None)) is None


def test_the_gates_message_stays_the_same_while_it_waits() -> None:
    """The planner posts one Event per distinct message: a countdown would post one a pass."""
    first = gate.start_window(observed(at("2026-11-30 12:00"), NIGHTS))
    later = gate.start_window(observed(at("2026-11-30 15:00"), NIGHTS))
    assert first is not None
    assert later is not None
    assert first.message == later.message


# -- idle ----------------------------------------------------------------------------------------
GPU_IDLE = Idle.model_validate({"after": "30m", "gpuUtilizationBelow": 10})
BOTH = Idle.model_validate(
    {"after": "30m", "gpuUtilizationBelow": 10, "requestsQuery": "sum(rate(x[5m]))"}
)


def test_idle_needs_every_gpu_below_the_threshold() -> None:
    assert judge(GPU_IDLE, [Reading(GPU_UTILIZATION, (2.0, 9.0))]).idle
    busy = judge(GPU_IDLE, [Reading(GPU_UTILIZATION, (2.0, 10.0))])
    assert not busy.idle
    assert "10%" in busy.message


def test_no_data_or_an_error_is_never_idle() -> None:
    assert not judge(GPU_IDLE, [Reading(GPU_UTILIZATION, ())]).idle
    failed = judge(GPU_IDLE, [Reading(GPU_UTILIZATION, None, "no answer within 10 s")])
    assert not failed.idle
    assert "no answer" in failed.message
    assert not judge(GPU_IDLE, []).idle


def test_with_both_signals_both_must_say_idle() -> None:
    quiet = Reading(REQUESTS, (0.0,))
    cold = Reading(GPU_UTILIZATION, (1.0,))
    assert judge(BOTH, [quiet, cold]).idle
    assert not judge(BOTH, [Reading(REQUESTS, (0.2,)), cold]).idle
    assert not judge(BOTH, [quiet]).idle


def test_the_gpu_query_reads_dcgm_by_namespace_and_the_revisions_pods() -> None:
    query = gpu_query("team-a", ["web-0123456789", "web-abcdef0123"])
    assert query == (
        'max(max_over_time(DCGM_FI_DEV_GPU_UTIL{namespace="team-a",'
        'pod=~"(web-0123456789|web-abcdef0123)-[a-z0-9]+-[a-z0-9]+"}[1m]))'
    )
    assert gpu_query("team-a", []) is None


def test_idle_needs_a_signal_and_a_sensible_after() -> None:
    with pytest.raises(ValidationError, match="requestsQuery"):
        Idle.model_validate({"after": "30m"})
    with pytest.raises(ValidationError, match="after: must be at least 1m"):
        Idle.model_validate({"after": "30s", "gpuUtilizationBelow": 5})
    with pytest.raises(ValidationError, match="gpuUtilizationBelow"):
        Idle.model_validate({"after": "30m", "gpuUtilizationBelow": 101})
