"""`stratus` shows what a schedule changes next (get's NEXT column, describe's lines), and
`stratus resume infs/NAME` wakes an InferenceService that idle reclamation scaled to zero."""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

import pytest

from stratus.cli import render, resources
from stratus.cli.render import INFERENCESERVICE, TRAININGJOB
from stratus.serving.labels import WAKE_ANNOTATION
from tests.unit.cli.test_commands import TRAINING, FakeCluster, infs, run

NOW = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)  # a Monday
NIGHTS = {
    "offHours": [{"days": ["Mon", "Tue"], "start": "20:00", "end": "07:00"}],
    "timeZone": "Europe/Berlin",
}


def scheduled_infs(**record: Any) -> dict[str, Any]:
    obj = infs("Healthy", stableRevision="aaa", schedule=record)
    obj["spec"]["schedule"] = NIGHTS
    return obj


def waiting_job(phase: str = "Waiting") -> dict[str, Any]:
    window = {"days": ["Mon"], "start": "22:00", "end": "06:00", "timeZone": "Europe/Berlin"}
    return {
        **TRAINING,
        "spec": {"image": "train:1", "schedule": {"startWindow": window}},
        "status": {"phase": phase},
    }


def test_get_shows_the_next_change_of_a_scheduled_service() -> None:
    obj = scheduled_infs(reason="OnHours", nextChange="2026-11-30T19:00:00Z", nextReplicas=0)
    header, row = render.get_table(INFERENCESERVICE, [obj], NOW, False, False).splitlines()
    assert header.split()[-1] == "NEXT"
    assert row.endswith("0 replicas in 7h")


def test_get_has_no_next_column_without_a_schedule() -> None:
    plain = infs("Healthy", stableRevision="aaa")
    header = render.get_table(INFERENCESERVICE, [plain], NOW, False, False).splitlines()[0]
    assert "NEXT" not in header


def test_a_job_waiting_for_its_start_window_says_when_it_starts() -> None:
    # Monday 22:00 in Berlin is 21:00 UTC: nine hours after NOW.
    assert render.next_change(TRAININGJOB, waiting_job(), NOW) == "starts in 9h"
    assert render.next_change(TRAININGJOB, waiting_job("Running"), NOW) is None
    row = render.get_table(TRAININGJOB, [waiting_job()], NOW, False, False).splitlines()[1]
    assert row.endswith("starts in 9h")


def test_describe_shows_the_schedule_its_state_and_what_comes_next() -> None:
    obj = scheduled_infs(
        reason="OnHours",
        message="on-hours; off-hours begin at 2026-11-30 20:00 CET",
        nextChange="2026-11-30T19:00:00Z",
        nextReplicas=0,
        gpuHoursReclaimed=12.5,
    )
    obj["spec"]["idle"] = {"after": "30m", "gpuUtilizationBelow": 5}
    text = render.describe_inferenceservice(obj, [], [], NOW)
    assert "Off-hours:   Mon,Tue 20:00-07:00 Europe/Berlin (at 0 replicas, back 10m early)" in text
    assert "Idle:        to zero after 30m of GPU below 5%" in text
    assert "Schedule:    OnHours: on-hours; off-hours begin at 2026-11-30 20:00 CET" in text
    assert "GPU-hours reclaimed: 12.5" in text
    assert "Next change: 0 replicas in 7h" in text
    job = render.describe_trainingjob(waiting_job(), [], [], NOW)
    assert "Start window: Mon 22:00-06:00 Europe/Berlin" in job
    assert "Next change: starts in 9h" in job


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> FakeCluster:
    fake = FakeCluster(
        {
            ("trainingjobs", "train"): TRAINING,
            ("inferenceservices", "web"): infs("ScaledDown", stableRevision="aaa"),
        }
    )

    def connect(args: argparse.Namespace) -> FakeCluster:
        return fake

    monkeypatch.setattr(resources, "connect", connect)
    return fake


def test_resume_wakes_an_idle_service_with_a_fresh_annotation(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "resume", "infs/web")
    assert code == 0
    assert out == "inferenceservice ml/web: wake-up requested\n"
    ((plural, name, body),) = cluster.patches
    assert (plural, name) == ("inferenceservices", "web")
    assert list(body["metadata"]["annotations"]) == [WAKE_ANNOTATION]
    run(capsys, "resume", "infs/web")
    first, second = (p[2]["metadata"]["annotations"][WAKE_ANNOTATION] for p in cluster.patches)
    assert first != second
    # A TrainingJob is still resumed by its spec.
    assert run(capsys, "resume", "train")[0] == 0
    assert cluster.patches[-1] == ("trainingjobs", "train", {"spec": {"suspend": False}})
