"""The rollout settings that keep capacity and bound a canary's wait: defaults, and what is
refused at the door."""

from __future__ import annotations

from typing import Any

import pytest

from stratus.api import resources
from stratus.api.inferenceservice import InferenceServiceSpec


def service(**rollout: Any) -> dict[str, Any]:
    return {
        "apiVersion": "stratus.dev/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": "web"},
        "spec": {"image": "serve:1", "model": {"uri": "https://m/x"}, "rollout": rollout},
    }


def test_capacity_is_kept_and_a_canary_has_ten_minutes_by_default() -> None:
    spec = InferenceServiceSpec.model_validate(
        {"image": "serve:1", "model": {"uri": "s3://models/m"}}
    )
    assert (spec.rollout.capacity, spec.rollout.progress_deadline) == ("Keep", "10m")


@pytest.mark.parametrize("deadline", ["1s", "1000ms", "90s", "1h30m"])
def test_a_deadline_of_a_second_or_more_is_accepted(deadline: str) -> None:
    resources.validate(service(progressDeadline=deadline, capacity="Reduce"))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("progressDeadline", "0s", "spec.rollout.progressDeadline: must be at least 1s"),
        ("progressDeadline", "500ms", "spec.rollout.progressDeadline: must be at least 1s"),
        ("progressDeadline", "soon", "spec.rollout.progressDeadline"),
        ("capacity", "Some", "spec.rollout.capacity"),
    ],
)
def test_a_bad_setting_is_refused_naming_the_field(field: str, value: str, message: str) -> None:
    with pytest.raises(resources.InvalidResourceError) as refused:
        resources.validate(service(**{field: value}))
    assert message in str(refused.value)
