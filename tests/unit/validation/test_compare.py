"""Comparators on pairs of answers: what agrees, how samples are counted, what the detail names,
and what of an answer a report may show."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from stratus.api.validation import Comparator
from stratus.validation.compare import MISSING, Answer, Hook, Outcome, compare, redact, select

EXACT = Comparator(name="exact", type="exact", fields=["predictions"])
WHOLE = Comparator(name="whole", type="exact")
LABELS = Comparator(name="labels", type="label", fields=["predictions"])
TOP1 = Comparator(name="top1", type="topK", fields=["scores"])


def ok(body: Any) -> Answer:
    return Answer(200, body)


def numeric(absolute: float | None = None, relative: float | None = None) -> Comparator:
    return Comparator(
        name="num", type="numeric", fields=["outputs"], absolute=absolute, relative=relative
    )


def top_k(k: int, min_overlap: float | None = None) -> Comparator:
    return Comparator(name="topk", type="topK", fields=["scores"], k=k, min_overlap=min_overlap)


def test_select_walks_keys_and_list_indices_and_marks_what_is_missing() -> None:
    body = {"outputs": [{"data": [1, 2]}, {"data": [3]}], "0": "key", "model": "m"}
    selected = select(body, ["outputs.1.data", "outputs.2.data", "0", "model.x", "outputs.0"])
    assert selected == {
        "outputs.1.data": [3],
        "outputs.2.data": MISSING,  # index past the end
        "0": "key",  # a digit is an object key where the object has it
        "model.x": MISSING,  # a string has no fields
        "outputs.0": {"data": [1, 2]},
    }
    assert select(body, []) == {"": body}
    assert select([5, 6], ["1"]) == {"1": 6}
    assert MISSING != None  # noqa: E711 - a missing field is not a JSON null
    assert repr(MISSING) == "missing"


@pytest.mark.parametrize(
    ("baseline", "candidate", "agrees"),
    [
        ({"predictions": [1, 2]}, {"predictions": [1, 2], "extra": 1}, True),  # unselected
        ({"predictions": [1, 2]}, {"predictions": [1.0, 2.0]}, True),  # one JSON number
        ({"predictions": {"a": 1, "b": 2}}, {"predictions": {"b": 2, "a": 1}}, True),
        ({"predictions": [1, 2]}, {"predictions": [2, 1]}, False),
        ({"predictions": [True]}, {"predictions": [1]}, False),  # a bool is not a number
        ({"predictions": [0]}, {"predictions": [False]}, False),
        ({"predictions": "1"}, {"predictions": 1}, False),
        ({"predictions": None}, {}, False),  # null is not absence
        ({"other": 1}, {"other": 2}, True),  # absent from both
        ({"predictions": [math.nan]}, {"predictions": [math.nan]}, True),  # the same text
        ({"predictions": [math.nan]}, {"predictions": [0.0]}, False),
    ],
)
def test_exact(baseline: Any, candidate: Any, agrees: bool) -> None:
    outcome = compare(EXACT, ok(baseline), ok(candidate))
    assert (outcome.agreed, outcome.total) == ((1, 1) if agrees else (0, 1))
    assert bool(outcome.detail) is not agrees


def test_exact_detail_names_the_first_differing_path_not_the_body() -> None:
    baseline = {"predictions": [{"label": "cat", "secret": "x" * 1000}]}
    candidate = {"predictions": [{"label": "dog", "secret": "x" * 1000}]}
    assert (
        compare(EXACT, ok(baseline), ok(candidate)).detail == "predictions.0.label: 'cat' vs 'dog'"
    )
    assert compare(WHOLE, ok([1, 2]), ok([1, 2, 3])).detail == "(answer): 2 elements vs 3"
    assert compare(WHOLE, ok("a"), ok("b")).detail == "(answer): 'a' vs 'b'"
    missing = compare(EXACT, ok({"predictions": 1}), ok({})).detail
    assert missing == "predictions: 1 vs missing"
    long = compare(EXACT, ok({"predictions": "a" * 5000}), ok({"predictions": "b" * 5000}))
    assert len(long.detail) <= 200
    assert "aaaa" in long.detail
    assert "\n" not in long.detail


@pytest.mark.parametrize(
    ("comparator", "baseline", "candidate", "agrees"),
    [
        (numeric(), [1.0, 2.0], [1, 2], True),
        (numeric(), [1.0], [1.0000001], False),  # tolerances default to 0
        (numeric(absolute=0.01), [1.0], [1.005], True),
        (numeric(absolute=0.01), [1.0], [1.0101], False),
        (numeric(relative=0.1), [100.0], [110.0], True),  # relative to the larger magnitude
        (numeric(relative=0.1), [100.0], [111.2], False),
        (numeric(relative=0.1), [0.0], [1e-9], False),  # relative alone never excuses zero
        (numeric(absolute=1.0, relative=0.5), [10.0], [14.0], True),  # the looser bound
        (numeric(absolute=1), {"a": [[1.0, 2.0]]}, {"a": [[1.5, 2.5]]}, True),  # nested
        (numeric(absolute=1), {"a": 1.0}, {"b": 1.0}, False),  # same structure
        (numeric(absolute=1), [1.0, 2.0], [1.0], False),
        (numeric(absolute=1), ["x", 1.0], ["x", 1.5], True),  # non-numbers equal
        (numeric(absolute=1), ["x", 1.0], ["y", 1.0], False),
        (numeric(absolute=5), [True], [1], False),  # a bool is not a number
        (numeric(absolute=5), [True], [True], True),
        (numeric(absolute=5), [math.nan], [math.nan], True),  # the same answer
        (numeric(absolute=5), [math.nan], [1.0], False),
        (numeric(absolute=5), [math.inf], [math.inf], True),
        (numeric(absolute=5), [math.inf], [-math.inf], False),
        (numeric(absolute=5), [None], [0.0], False),
    ],
)
def test_numeric(comparator: Comparator, baseline: Any, candidate: Any, agrees: bool) -> None:
    outcome = compare(comparator, ok({"outputs": baseline}), ok({"outputs": candidate}))
    assert (outcome.agreed, outcome.total) == ((1, 1) if agrees else (0, 1))


def test_numeric_detail_names_the_element() -> None:
    outcome = compare(
        numeric(absolute=0.1), ok({"outputs": [[0.1, 0.2]]}), ok({"outputs": [[0.1, 0.9]]})
    )
    assert outcome.detail == "outputs.0.1: 0.2 vs 0.9"


@pytest.mark.parametrize(
    ("baseline", "candidate", "agreed", "total"),
    [
        (["a", "b", "c"], ["a", "x", "c"], 2, 3),  # a sample per instance
        (["a", "b", "c"], ["a", "b"], 2, 3),  # the extra instance disagrees
        (["a"], ["a", "b", "c"], 1, 3),
        ("a", "a", 1, 1),  # one label on its own
        ("a", ["a"], 1, 1),
        ([1, 2], [1.0, True], 1, 2),
        ([["x", "y"]], [["x", "y"]], 1, 1),  # a multi-label instance is compared whole
        ([], [], 0, 0),  # no instances, no samples
        ([], ["a"], 0, 1),
    ],
)
def test_label(baseline: Any, candidate: Any, agreed: int, total: int) -> None:
    outcome = compare(LABELS, ok({"predictions": baseline}), ok({"predictions": candidate}))
    assert (outcome.agreed, outcome.total) == (agreed, total)


def test_label_detail_and_missing_field() -> None:
    outcome = compare(LABELS, ok({"predictions": ["a", "b"]}), ok({"predictions": ["a", "c"]}))
    assert outcome.detail == "predictions.1: 'b' vs 'c'"
    assert compare(LABELS, ok({"predictions": ["a"]}), ok({"predictions": ["a", "c"]})).detail == (
        "predictions.1: missing vs 'c'"
    )
    # Absent from one: every instance the other has disagrees.
    assert compare(LABELS, ok({"predictions": ["a", "b"]}), ok({})) == Outcome(
        0, 2, "predictions: 2 instances vs missing"
    )
    # Absent from both: most likely a wrong path, so it must not pass quietly.
    assert compare(LABELS, ok({}), ok({})) == Outcome(0, 1, "predictions: missing vs missing")


@pytest.mark.parametrize(
    ("comparator", "baseline", "candidate", "agreed", "total"),
    [
        (TOP1, [[0.1, 0.9], [0.8, 0.2]], [[0.2, 0.8], [0.4, 0.6]], 1, 2),
        (TOP1, [0.1, 0.9], [0.3, 0.7], 1, 1),  # one score list on its own
        (TOP1, [[0.5, 0.5]], [[0.5, 0.4]], 1, 1),  # a tie goes to the lower position
        (TOP1, [[0.5, 0.5]], [[0.4, 0.5]], 0, 1),
        (TOP1, [[1, 2]], [[1, 2], [2, 1]], 1, 2),  # the extra instance disagrees
        (TOP1, [[1, 2]], [[1, 2, 3]], 0, 1),  # different numbers of scores
        (TOP1, [[1, math.nan]], [[1, math.nan]], 0, 1),  # NaN has no rank
        (TOP1, [[1, True]], [[1, True]], 0, 1),  # nor has a bool
        (TOP1, [["a", "b"]], [["a", "b"]], 0, 1),
        (TOP1, [[]], [[]], 1, 1),  # nothing to rank: the same nothing
        (top_k(2), [[0.1, 0.5, 0.4]], [[0.5, 0.1, 0.4]], 0, 1),  # {1,2} vs {0,2}
        (top_k(2, 0.5), [[0.1, 0.5, 0.4]], [[0.5, 0.1, 0.4]], 1, 1),
        (top_k(2), [[0.1, 0.5, 0.4]], [[0.0, 0.4, 0.5]], 1, 1),  # order within the top k
        (top_k(5), [[3, 1, 2]], [[1, 3, 2]], 1, 1),  # k beyond the scores: all of them
    ],
)
def test_top_k(
    comparator: Comparator, baseline: Any, candidate: Any, agreed: int, total: int
) -> None:
    outcome = compare(comparator, ok({"scores": baseline}), ok({"scores": candidate}))
    assert (outcome.agreed, outcome.total) == (agreed, total)


def test_top_k_detail() -> None:
    outcome = compare(
        top_k(2), ok({"scores": [[0.1, 0.5, 0.4]]}), ok({"scores": [[0.5, 0.1, 0.4]]})
    )
    assert outcome.detail == "scores.0: top 2 positions [1, 2] vs [0, 2]"


def test_statuses() -> None:
    body = {"predictions": ["a", "b", "c"]}
    # A status that differs disagrees, per instance the answered side has.
    assert compare(LABELS, ok(body), Answer(503, "busy")) == Outcome(0, 3, "status 200 vs 503")
    assert compare(LABELS, Answer(500, None), ok(body)).total == 3
    assert compare(EXACT, ok(body), Answer(0, None, "timed out")) == Outcome(
        0, 1, "status 200 vs error (timed out)"
    )
    assert compare(LABELS, Answer(400, "bad"), Answer(500, "bad")) == Outcome(
        0, 1, "status 400 vs 500"
    )
    # The same refusal from both agrees, whatever the bodies say.
    assert compare(EXACT, Answer(400, "bad: x"), Answer(400, "bad: y")) == Outcome(1, 1)
    # Neither reachable: no sample at all.
    assert compare(EXACT, Answer(0, None, "refused"), Answer(0, None, "refused")).total == 0
    # 2xx other than 200 is compared like 200.
    assert compare(EXACT, Answer(201, body), ok(body)) == Outcome(1, 1, "")


def test_hook_gets_the_selected_fields_and_judges() -> None:
    seen: list[tuple[Any, Any]] = []

    def judge(result: bool | float) -> Hook:
        def hook(baseline: Any, candidate: Any) -> bool | float:
            seen.append((baseline, candidate))
            return result

        return hook

    hooked = Comparator(name="h", type="hook", fields=["a", "b"], url="http://judge/")
    scored = Comparator(name="h", type="hook", url="http://judge/", min_score=0.5)
    baseline, candidate = ok({"a": 1, "b": 2, "c": 3}), ok({"a": 1, "c": 4})
    assert compare(hooked, baseline, candidate, judge(True)) == Outcome(1, 1)
    assert seen[-1] == ({"a": 1, "b": 2}, {"a": 1})  # an absent field is absent
    assert compare(hooked, baseline, candidate, judge(False)) == Outcome(0, 1, "hook: disagree")
    assert compare(scored, baseline, candidate, judge(0.5)) == Outcome(1, 1)
    assert seen[-1] == (baseline.body, candidate.body)  # no fields: the whole answers
    assert compare(scored, baseline, candidate, judge(0.25)) == Outcome(
        0, 1, "hook: score 0.25 below 0.5"
    )
    default = Comparator(name="h", type="hook", url="http://judge/")
    assert compare(default, baseline, candidate, judge(0.99)).agreed == 0  # minScore 1
    assert compare(default, baseline, candidate, judge(1)).agreed == 1
    with pytest.raises(ValueError, match="comparator h is a hook"):
        compare(default, baseline, candidate)


def test_redact_shows_the_selected_fields_only_and_cuts_them() -> None:
    body = {"predictions": ["a" * 300], "label": "x", "input_echo": "the user's request"}
    two = Comparator(name="e", type="exact", fields=["predictions", "label", "absent"])
    shown = redact(two, ok(body))
    assert set(shown) == {"predictions", "label"}
    assert shown["label"] == "x"
    assert isinstance(shown["predictions"], str)
    assert len(shown["predictions"]) == 200
    assert shown["predictions"].startswith('["aaa')
    assert shown["predictions"].endswith("...")
    assert "request" not in json.dumps(shown)
    # No fields: the whole body, cut whole.
    assert redact(WHOLE, ok({"a": 1})) == {"a": 1}
    assert len(redact(WHOLE, ok(body))) == 200
    # NaN is not JSON: shown as its text.
    assert redact(EXACT, ok({"predictions": [math.nan]})) == {"predictions": "[NaN]"}
    # A failed answer's body may echo the request: only the status (and transport error).
    assert redact(EXACT, Answer(400, {"error": "bad input: secret"})) == {"status": 400}
    assert redact(EXACT, Answer(0, None, "connection refused")) == {
        "status": 0,
        "error": "connection refused",
    }
