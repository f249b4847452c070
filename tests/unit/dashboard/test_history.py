"""The history the watches keep, since the status holds only the latest figures."""

from __future__ import annotations

from stratus.dashboard import history
from tests.unit.dashboard.data import at, canary_status, service, trainingjob


def test_only_new_figures_are_added() -> None:
    samples = history.Samples()
    first = {**service(), "status": canary_status(0, 10, 10, 30, 0.01)}
    assert history.observe(samples, first, 100.0) is True
    # The same status seen again (a resync, a write of another field) adds nothing.
    assert history.observe(samples, first, 101.0) is False
    achieved = {**service(), "status": canary_status(0, 10, 5, 30, 0.01)}
    assert history.observe(samples, achieved, 102.0) is True
    later = {**service(), "status": canary_status(0, 10, 5, 60, 0.03)}
    assert history.observe(samples, later, 103.0) is True
    assert [w["achieved"] for w in samples.weights] == [10, 5]
    assert [a["at"] for a in samples.analysis] == [at(30), at(60)]
    assert len(samples.validation) == 1


def test_trainingjob_checkpoints_are_kept_in_order() -> None:
    samples = history.Samples()
    for step in (100, 100, 200):
        tj = trainingjob(lastCheckpoint={"path": f"/c/step-{step}", "step": step, "time": at(step)})
        history.observe(samples, tj, float(step))
    assert [c["step"] for c in samples.checkpoints] == [100, 200]


def test_samples_are_bounded() -> None:
    samples = history.Samples()
    for index in range(history.MAX_SAMPLES + 10):
        obj = {**service(), "status": {"canaryWeight": index % 100, "canaryWeightAchieved": index}}
        history.observe(samples, obj, float(index))
    assert len(samples.weights) == history.MAX_SAMPLES
    assert samples.weights[-1]["achieved"] == history.MAX_SAMPLES + 9


def test_a_deleted_resource_is_forgotten() -> None:
    kept = history.History()
    kept.observe({**service(), "status": canary_status(0, 10, 10, 30, 0.01)}, 1.0)
    key = ("InferenceService", "serving", "web")
    assert kept.get(key)["weights"]
    kept.forget(key)
    assert kept.get(key) == {"weights": [], "analysis": [], "validation": [], "checkpoints": []}
