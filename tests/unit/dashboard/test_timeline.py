"""The attempt timeline: attempts rebuilt from Events, pods and checkpoints, and its geometry."""

from __future__ import annotations

import pytest

from stratus.dashboard import timeline
from tests.unit.dashboard.data import at, epoch, event, preempted_run, trainingjob

NOW = epoch(1500)


def test_attempts_of_a_preempted_run() -> None:
    tj, events, pods = preempted_run()
    first, second = timeline.attempts(tj, events, pods, now=NOW)
    assert (first.number, first.capacity, first.ended) == (1, "spot", "Preempted")
    assert first.nodes == ("spot-a", "spot-b")  # the scheduler's Events outlive the pods
    assert (first.start, first.end) == (epoch(0), epoch(600))
    assert first.resume_step is None
    # The step it ended with is the one the next attempt resumed from.
    assert first.end_step == 400
    # Saved at a time nobody saw: what was lost is unknown, not guessed.
    assert first.lost_seconds is None
    assert first.downtime_seconds == 60
    assert (second.capacity, second.ended, second.nodes) == ("on-demand", "Running", ("od-a",))
    assert (second.resume_path, second.resume_step) == ("/ckpt/step-000000000400", 400)
    assert second.end_step == 900
    assert second.lost_seconds is None


def test_time_and_gpu_hours_lost_since_the_checkpoint_a_watch_saw() -> None:
    tj, events, pods = preempted_run()
    seen = [{"path": "/ckpt/step-000000000400", "step": 400, "time": at(480)}]
    first, _ = timeline.attempts(tj, events, pods, seen, now=NOW)
    assert first.checkpoint_time == epoch(480)
    assert first.lost_seconds == 120
    # 2 workers of 4 GPUs each, for 120 seconds.
    assert first.lost_gpu_hours == pytest.approx(120 * 8 / 3600, abs=1e-4)


def test_an_attempt_that_saved_nothing_loses_all_its_run_time() -> None:
    tj = trainingjob(phase="Restarting", attempt=2, preemptions=1)
    events = [
        event(tj, 0, "AttemptStarted", "attempt 1 started on spot capacity"),
        event(tj, 300, "Preempted", "attempt 1 was preempted; the next attempt resumes"),
    ]
    first, second = timeline.attempts(tj, events, now=NOW)
    assert (first.ended, first.lost_seconds, first.end_step) == ("Preempted", 300, None)
    assert (second.number, second.start, second.ended) == (2, None, "Running")


@pytest.mark.parametrize(
    ("reason", "message", "ended", "detail"),
    [
        ("Restarted", "attempt 1 failed with exit code 3; restart 1 of 2", "Failed", "exit code 3"),
        (
            "Restarted",
            "attempt 1 failed with retryable exit code 75; retryable restart 1 of 5",
            "Failed",
            "retryable exit code 75",
        ),
        ("Succeeded", "attempt 1 completed", "Succeeded", "attempt 1 completed"),
        (
            "Suspended",
            "attempt 1 stopped: the TrainingJob is suspended",
            "Suspended",
            "attempt 1 stopped: the TrainingJob is suspended",
        ),
        (
            "Failed",
            "activeDeadlineSeconds (60s) passed across all attempts",
            "Failed",
            "activeDeadlineSeconds (60s) passed across all attempts",
        ),
        (
            "Failed",
            "attempt 1 was preempted (pod p on node n1): more than maxPreemptions (0) preemptions",
            "Preempted",
            "attempt 1 was preempted (pod p on node n1): more than maxPreemptions (0) preemptions",
        ),
    ],
)
def test_how_an_attempt_ended(reason: str, message: str, ended: str, detail: str) -> None:
    tj = trainingjob(phase="Failed", attempt=1)
    events = [
        event(tj, 0, "AttemptStarted", "attempt 1 started on on-demand capacity"),
        event(tj, 90, reason, message),
    ]
    (only,) = timeline.attempts(tj, events, now=NOW)
    assert (only.ended, only.detail, only.end) == (ended, detail, epoch(90))


def test_an_attempt_whose_end_event_expired_is_stopped_not_running() -> None:
    tj = trainingjob(phase="Running", attempt=2)
    events = [
        event(tj, 0, "AttemptStarted", "attempt 1 started on spot capacity"),
        event(tj, 100, "AttemptStarted", "attempt 2 started on spot capacity"),
    ]
    first, second = timeline.attempts(tj, events, now=NOW)
    assert (first.ended, second.ended) == ("Stopped", "Running")


def test_step_of_prefers_what_was_reported_then_the_name() -> None:
    known = {"/c/latest": {"path": "/c/latest", "step": 12}}
    assert timeline.step_of("/c/latest", known) == 12
    assert timeline.step_of("s3://b/p/step-000000000042", known) == 42
    assert timeline.step_of("/c/step_7/", known) == 7
    assert timeline.step_of("/c/final", known) is None
    assert timeline.step_of(None, known) is None


def test_geometry_places_bars_lost_work_and_marks_on_one_scale() -> None:
    tj, events, pods = preempted_run()
    seen = [{"path": "/ckpt/step-000000000400", "step": 400, "time": at(480)}]
    drawn = timeline.geometry(timeline.attempts(tj, events, pods, seen, now=NOW), NOW)
    first, second = drawn["bars"]
    # 1500 seconds from the first start to now, over 1000 units.
    assert (first["x"], first["width"], first["capacity"]) == (0, 400, "spot")
    assert (second["x"], second["width"], second["capacity"]) == (440, 560, "on-demand")
    assert first["label"] == "#1 spot-a, spot-b"
    (lost,) = drawn["lost"]
    assert (lost["attempt"], lost["x"], lost["width"]) == (1, 320, 80)
    assert drawn["marks"] == [{"attempt": 1, "x": 400, "ended": "Preempted"}]
    assert [t["x"] for t in drawn["ticks"]] == [0, 200, 400, 600, 800, 1000]
    assert drawn["ticks"][-1]["label"] == "12:25:00"


def test_geometry_of_nothing_started_is_empty() -> None:
    drawn = timeline.geometry([timeline.Attempt(1)], NOW)
    assert (drawn["bars"], drawn["ticks"]) == ([], [])


def test_view_sums_lost_gpu_hours_and_keeps_pod_events_out_of_the_table() -> None:
    tj, events, pods = preempted_run()
    seen = [{"path": "/ckpt/step-000000000400", "step": 400, "time": at(480)}]
    found = timeline.view(tj, events, pods, seen, NOW)
    assert found["gpus"] == 8
    assert found["gpuHours"] == pytest.approx(4800 / 3600, abs=1e-3)
    assert found["lostGpuHours"] == pytest.approx(120 * 8 / 3600, abs=1e-4)
    assert [e["reason"] for e in found["events"]] == [
        "AttemptStarted",
        "Resumed",
        "Preempted",
        "AttemptStarted",
    ]
    assert [a["number"] for a in found["attempts"]] == [1, 2]
