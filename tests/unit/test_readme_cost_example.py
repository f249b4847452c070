"""The README's cost governance example is valid input: each resource against its model, and
the chart values against the chart's schema keys."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from stratus.api.budget import BudgetSpec
from stratus.api.inferenceservice import InferenceServiceSpec
from stratus.api.trainingjob import TrainingJobSpec
from stratus.cost import prices

ROOT = Path(__file__).resolve().parents[2]
MODELS: dict[str, Any] = {
    "Budget": BudgetSpec,
    "TrainingJob": TrainingJobSpec,
    "InferenceService": InferenceServiceSpec,
}


def example() -> list[dict[str, Any]]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Cost governance") :]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    return list(yaml.safe_load_all(block))


def test_every_resource_of_the_example_is_valid() -> None:
    _values, *resources = example()
    assert sorted(r["kind"] for r in resources) == sorted(MODELS)
    for resource in resources:
        MODELS[resource["kind"]].model_validate(resource["spec"])


def test_the_example_values_are_chart_values_and_a_valid_price_table() -> None:
    values, *_ = example()
    chart = yaml.safe_load((ROOT / "charts/stratus/values.yaml").read_text())
    assert set(values) <= set(chart)
    assert set(values["cost"]) <= set(chart["cost"])
    table = prices.parse(json.dumps(values["cost"]["prices"]), values["cost"]["currency"])
    assert table.price("NVIDIA-H100-80GB-HBM3") == prices.Price(3.90, 9.80)
