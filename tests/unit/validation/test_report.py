"""The report: its verdict and reason, its JSON (the shape the operator copies into
status.validation, within a termination message's 4096 bytes whatever it holds) and its text."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from stratus.api.inferenceservice import ComparatorResult
from stratus.api.validation import Comparator
from stratus.validation.compare import Answer, redact
from stratus.validation.report import Example, Report, Source, SourceResult
from stratus.validation.stats import Decision, Tally, Verdict

LABELS = Comparator(name="labels", type="label", fields=["predictions"])


def source(
    name: Source = "shadow", verdicts: dict[str, Verdict] | None = None, **figures: Any
) -> SourceResult:
    verdicts = verdicts or {"labels": "Failed"}
    return SourceResult(
        source=name,
        tallies={c: Tally(1000, 948, 1000, 996) for c in verdicts},
        decisions={c: Decision(v, f"{c}: {v.lower()} figures") for c, v in verdicts.items()},
        **figures,
    )


def example(comparator: str = "labels", value: Any = "a", line: int | None = None) -> Example:
    return Example(
        comparator=comparator,
        source="shadow",
        baseline={"predictions": [value]},
        candidate={"predictions": ["b"]},
        detail="predictions.0: 'a' vs 'b'",
        line=line,
    )


def test_to_json_has_the_shape_the_operator_reads() -> None:
    replay = SourceResult(
        source="replay",
        tallies={"labels": Tally(500, 500)},
        decisions={"labels": Decision("Passed", "labels: fine")},
        requests=500,
        accuracy={"candidate": 0.97, "baseline": 0.9712345},
    )
    shadow = source("shadow", requests=1210, errors=2, skipped=3)
    report = Report([replay, shadow], [example(line=None)], {"p50": 0.8, "p99": 3.14159})
    document = json.loads(report.to_json())
    assert document == {
        "verdict": "Failed",
        "reason": "shadow: labels: failed figures",
        "results": [
            {
                "name": "labels",
                "source": "replay",
                "samples": 500,
                "agreement": 1.0,
                "adjusted": 1.0,
                "verdict": "Passed",
            },
            {
                "name": "labels",
                "source": "shadow",
                "samples": 1000,
                "agreement": 0.948,
                "noiseFloor": 0.004,
                "adjusted": 0.952,
                "verdict": "Failed",
            },
        ],
        "requests": {"replay": 500, "shadow": 1210},
        "errors": {"replay": 0, "shadow": 2},
        "skipped": {"replay": 0, "shadow": 3},
        "accuracy": {"replay/candidate": 0.97, "replay/baseline": 0.9712},
        "shadowOverheadMs": {"p50": 0.8, "p99": 3.142},
        "examples": [
            {
                "comparator": "labels",
                "source": "shadow",
                "detail": "predictions.0: 'a' vs 'b'",
                "baseline": {"predictions": ["a"]},
                "candidate": {"predictions": ["b"]},
            }
        ],
    }
    # The results are what status.validation.results holds.
    for entry in document["results"]:
        ComparatorResult.model_validate(entry)
    assert '": ' not in report.to_json()  # compact
    with_line = json.loads(Report([shadow], [example(line=7)]).to_json())
    assert with_line["examples"][0]["line"] == 7


@pytest.mark.parametrize(
    ("sources", "failure", "verdict", "reason"),
    [
        ([], "", "Pending", "nothing compared yet"),
        ([source(verdicts={"a": "Passed", "b": "Passed"})], "", "Passed", None),
        (
            [source(verdicts={"a": "Passed", "b": "Pending"})],
            "",
            "Pending",
            "shadow: b: pending figures",
        ),
        (
            [source("replay", {"a": "Passed"}), source(verdicts={"a": "Failed", "b": "Pending"})],
            "",
            "Failed",
            "shadow: a: failed figures",
        ),
        (
            [source(verdicts={"a": "Passed"})],
            "timed out after 30m",
            "Failed",
            "timed out after 30m",
        ),
        ([], "requests.jsonl line 3: not JSON", "Failed", "requests.jsonl line 3: not JSON"),
    ],
)
def test_verdict_and_reason(
    sources: list[SourceResult], failure: str, verdict: str, reason: str | None
) -> None:
    report = Report(sources, failure=failure)
    assert report.verdict == verdict
    if reason is not None:
        assert report.reason == reason
    assert json.loads(report.to_json())["verdict"] == verdict


def test_passed_reason_names_every_comparator() -> None:
    report = Report([source("replay", {"a": "Passed"}), source(verdicts={"b": "Passed"})])
    assert report.reason == "replay: a: passed figures; shadow: b: passed figures"


def _huge_report(names: list[str] | None = None) -> Report:
    huge = '\u00e9"\\' * 100_000  # escaped, each character takes 2 to 6 bytes
    # By default the longest names (63 characters), of the most comparators, failing.
    names = names or [f"c{i}-" + "x" * 58 for i in range(8)]
    sources = [
        SourceResult(
            source=s,
            tallies={n: Tally(10**9, 10**9 - 7, 10**9, 10**9 - 3) for n in names},
            decisions={n: Decision("Failed", f"{n}: " + "r" * 500) for n in names},
            requests=10**12,
            errors=10**12,
            skipped=10**12,
            accuracy={"candidate": 1 / 3, "baseline": 2 / 3},
        )
        for s in ("replay", "shadow")
    ]
    examples = [
        Example(
            comparator=names[i % 8],
            source="shadow",
            baseline={"field": huge, "other": huge},
            candidate=[[i] * 10_000],
            detail="d" * 1000,
            line=10**6,
        )
        for i in range(50)
    ]
    return Report(sources, examples, {"p50": 1e300, "p99": math.nan}, failure="")


def test_to_json_fits_a_termination_message_whatever_it_holds() -> None:
    report = _huge_report()
    text = report.to_json()
    assert len(text.encode()) <= 4096
    document = json.loads(text)
    assert document["verdict"] == "Failed"
    assert len(document["results"]) == 16  # the figures survive; examples give way
    assert "p99" not in document["shadowOverheadMs"]  # NaN is not JSON
    # A reason of any length fits too.
    failed = Report(report.sources, report.examples, failure="f" * 100_000 + "\u2603" * 5000)
    assert len(failed.to_json().encode()) <= 4096
    assert json.loads(failed.to_json())["reason"].startswith("fff")


def test_examples_survive_huge_values() -> None:
    document = json.loads(_huge_report([f"labels-{i}" for i in range(8)]).to_json())
    assert len(document["examples"]) >= 3  # cut, and fewer, but there
    assert document["examples"][0]["line"] == 10**6
    for shown in document["examples"]:
        assert len(json.dumps(shown["candidate"])) <= 200
        assert len(shown["detail"]) <= 200
        assert len(shown["baseline"]["field"]) <= 200


@pytest.mark.parametrize("limit", [100, 300, 1000, 2000])
def test_to_json_fits_any_limit_keeping_the_verdict(limit: int) -> None:
    text = _huge_report().to_json(limit)
    assert len(text.encode()) <= limit
    assert json.loads(text)["verdict"] == "Failed"


def test_examples_are_cut_before_they_are_dropped() -> None:
    shadow = source()
    examples = [example(value="v" * 150) for _ in range(9)]
    full = json.loads(Report([shadow], examples).to_json(10_000))["examples"]
    assert full[0]["baseline"] == {"predictions": ["v" * 150]}  # within 200 characters of JSON
    cut = json.loads(Report([shadow], examples).to_json(2000))["examples"]
    assert len(cut) == 9
    assert cut[0]["baseline"]["predictions"].endswith("...")
    fewer = json.loads(Report([shadow], examples * 10).to_json(2000))["examples"]
    assert 0 < len(fewer) < 90


def test_examples_show_only_the_selected_fields_of_answers() -> None:
    answer = {"predictions": ["cat"], "echo": {"instances": ["the user's private text"]}}
    failed = Answer(400, {"error": "cannot parse: the user's private text"})
    examples = [
        Example(
            "labels", "shadow", redact(LABELS, Answer(200, answer)), redact(LABELS, failed), "x"
        )
    ]
    text = Report([source()], examples).to_json()
    assert "private" not in text
    assert json.loads(text)["examples"][0]["baseline"] == {"predictions": ["cat"]}
    assert json.loads(text)["examples"][0]["candidate"] == {"status": 400}


def test_render() -> None:
    replay = SourceResult(
        source="replay",
        tallies={"labels": Tally(500, 500)},
        decisions={"labels": Decision("Passed", "labels: fine")},
        requests=500,
        accuracy={"candidate": 0.97},
    )
    report = Report([replay, source(requests=1210, errors=2)], [example(line=12)], {"p50": 0.8})
    text = report.render()
    assert text.splitlines()[0] == "Failed: shadow: labels: failed figures"
    assert "replay  labels      500      100.0%     -      100.0%    Passed" in text
    assert "shadow  labels      1000     94.8%      0.4%   95.2%     Failed" in text
    assert "replay: 500 requests, 0 errors, 0 skipped, candidate accuracy 97.0%" in text
    assert "shadow: 1210 requests, 2 errors, 0 skipped" in text
    assert "shadow overhead: p50 0.8 ms" in text
    assert "  labels (shadow line 12): predictions.0: 'a' vs 'b'" in text
    assert '    baseline:  {"predictions":["a"]}' in text
