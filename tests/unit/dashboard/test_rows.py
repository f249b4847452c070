"""The list page's rows and filters."""

from __future__ import annotations

from stratus.dashboard import rows
from tests.unit.dashboard.data import canary_status, event, service, trainingjob


def test_a_trainingjob_row_shows_its_gpu_hours_and_team() -> None:
    row = rows.resource_row(trainingjob(phase="Running", attempt=3, preemptions=2, gpuSeconds=7200))
    assert (row["kind"], row["phase"], row["team"], row["gpuHours"]) == (
        "TrainingJob",
        "Running",
        "nlp",
        2.0,
    )
    assert row["detail"] == "attempt 3, 2 preempted"


def test_an_inferenceservice_row_shows_its_canary_and_team_label() -> None:
    row = rows.resource_row(service(**canary_status(1, 50, 25, 0, 0.01)))
    assert (row["phase"], row["team"], row["gpuHours"]) == ("Progressing", "search", None)
    assert row["detail"] == "canary bbb222 at 25% of 50%"
    assert rows.resource_row(service())["phase"] == "Pending"


def test_metered_usage_gives_gpu_hours_and_cost_for_both_kinds() -> None:
    usage = {
        "gpuHours": {"spot": 1.5, "onDemand": 0.25},
        "cost": 3.456,
        "currency": "EUR",
        "savings": 4.0,
    }
    for obj in (trainingjob(usage=usage, gpuSeconds=60), service(usage=usage)):
        row = rows.resource_row(obj)
        assert (row["gpuHours"], row["cost"], row["currency"], row["savings"]) == (
            1.75,
            3.46,
            "EUR",
            4.0,
        )
    unpriced = rows.resource_row(service(usage={"gpuHours": {"onDemand": 2.0}}))
    assert (unpriced["gpuHours"], unpriced["cost"]) == (2.0, None)


def test_filters() -> None:
    row = rows.resource_row(trainingjob(name="llama-pretrain", phase="Failed"))
    assert rows.matches(row, {})
    assert rows.matches(row, {"name": "PRE", "kind": "TrainingJob", "phase": "Failed"})
    assert not rows.matches(row, {"name": "bert"})
    assert not rows.matches(row, {"namespace": "other"})
    assert not rows.matches(row, {"kind": "InferenceService"})
    assert not rows.matches(row, {"phase": "Running"})


def test_events_newest_first_with_their_source() -> None:
    tj = trainingjob()
    found = rows.event_rows([event(tj, 1, "A", "a"), event(tj, 5, "B", "b")])
    assert [(e["reason"], e["source"]) for e in found] == [
        ("B", "stratus-operator"),
        ("A", "stratus-operator"),
    ]
