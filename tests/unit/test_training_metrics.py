"""TrainingJob metrics name a team only when the admin listed it: a tenant's `spec.team` cannot
grow the number of series."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from stratus import metrics
from stratus.config import ConfigError, OperatorConfig, from_env
from tests.unit.fakes import TrainingWorld

TEAM_COUNTERS = (
    "stratus_training_attempts_total",
    "stratus_training_preemptions_total",
    "stratus_training_restarts_total",
    "stratus_training_retryable_restarts_total",
    "stratus_training_resumes_total",
    "stratus_training_gpu_seconds_total",
)


def teams_exported() -> set[str]:
    return {
        sample.labels["team"]
        for family in REGISTRY.collect()
        for sample in family.samples
        if sample.name in TEAM_COUNTERS
    }


def attempts(team: str) -> float:
    return REGISTRY.get_sample_value("stratus_training_attempts_total", {"team": team}) or 0.0


@pytest.mark.parametrize(
    ("team", "label"),
    [("nlp", "nlp"), ("vision", "vision"), ("not-listed", "other"), (None, "other"), ("", "other")],
)
def test_teams_outside_the_list_fold_into_other(team: str | None, label: str) -> None:
    assert metrics.team_label(team, frozenset({"nlp", "vision"})) == label


def test_every_training_counter_has_the_team_label() -> None:
    for name in metrics.TRAINING_COUNTS:
        assert metrics.TRAINING_COUNTS[name]._labelnames == metrics.TEAM_LABELS
    assert metrics.TRAINING_GPU_SECONDS._labelnames == metrics.TEAM_LABELS


@pytest.mark.parametrize(("team", "label"), [("nlp", "nlp"), ("team-4242", "other")])
def test_an_attempt_is_counted_under_its_listed_team_or_other(team: str, label: str) -> None:
    world = TrainingWorld({"image": "train:1", "resources": {"gpu": 1}, "team": team})
    world.controller.config = OperatorConfig(teams=frozenset({"nlp"}))
    before = attempts(label)
    world.reconcile()
    assert attempts(label) - before == 1
    assert "team-4242" not in teams_exported()


def test_the_team_list_comes_from_the_environment() -> None:
    assert from_env({"STRATUS_TEAMS": "nlp, vision,,"}).teams == {"nlp", "vision"}
    assert from_env({}).teams == frozenset()
    with pytest.raises(ConfigError, match="STRATUS_TEAMS: 'NLP team'"):
        from_env({"STRATUS_TEAMS": "nlp,NLP team"})
