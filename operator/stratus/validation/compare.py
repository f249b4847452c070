"""Whether a candidate's answer agrees with the baseline's, per comparator, and what of an answer
a report may show (the selected fields only)."""

from __future__ import annotations

import json
import math
import reprlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from stratus.api.validation import Comparator

DETAIL_CHARS = 200
VALUE_CHARS = 200
# A value inside a detail line: short enough that a path and two values fit in DETAIL_CHARS.
_DETAIL_VALUE_CHARS = 60
# Bounded work however large the value: repr of a whole body would be cut anyway.
_SHORT = reprlib.Repr()
_SHORT.maxstring = _DETAIL_VALUE_CHARS
_SHORT.maxother = _DETAIL_VALUE_CHARS


class _Missing:
    """A field path the answer lacks: unequal to every present value."""

    def __repr__(self) -> str:
        return "missing"


MISSING: Final = _Missing()


@dataclass(frozen=True)
class Answer:
    """One model answer: the HTTP status (0 for a transport error), the parsed JSON body (else
    the text; None on a transport error) and the transport error in one line."""

    status: int
    body: Any
    error: str = ""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


@dataclass(frozen=True)
class Outcome:
    """Samples compared (1 per request; 1 per instance for label and topK) and how many agreed,
    with the first disagreement in one line (field paths and short values, never whole bodies)."""

    agreed: int
    total: int
    detail: str = ""


# (baseline's selected fields, candidate's) -> agree, or a score compared with minScore.
Hook = Callable[[Any, Any], bool | float]


def select(body: Any, fields: Sequence[str]) -> dict[str, Any]:
    """{path: value} of the answer's fields; MISSING where the path is absent. No fields: the
    empty path, the whole body."""
    return {path: _resolve(body, path) for path in (fields or [""])}


def compare(
    comparator: Comparator, baseline: Answer, candidate: Answer, hook: Hook | None = None
) -> Outcome:
    """How many of the pair's samples agree under the comparator."""
    if not baseline.ok or not candidate.ok:
        return _unanswered(comparator, baseline, candidate)
    if comparator.type == "hook":
        return _hook(comparator, baseline.body, candidate.body, hook)
    if comparator.type in ("label", "topK"):
        path = comparator.fields[0]
        b, c = _resolve(baseline.body, path), _resolve(candidate.body, path)
        if comparator.type == "label":
            return _labels(path, b, c)
        return _top_k(path, b, c, comparator.k or 1, _default(comparator.min_overlap, 1.0))
    equal: Callable[[Any, Any], bool] = _json_equal
    if comparator.type == "numeric":
        equal = _close(_default(comparator.absolute, 0.0), _default(comparator.relative, 0.0))
    c_fields = select(candidate.body, comparator.fields)
    for path, b in select(baseline.body, comparator.fields).items():
        c = c_fields[path]
        both_absent = b is MISSING and c is MISSING
        difference = None if both_absent else _first_difference(path, b, c, equal)
        if difference is not None:
            return Outcome(0, 1, _cut(difference))
    return Outcome(1, 1)


def redact(comparator: Comparator, answer: Answer) -> Any:
    """What a report may show of an answer: its selected fields (the whole body without fields),
    each value at most VALUE_CHARS of JSON; of a failed answer, its status (and transport error)
    only, as an error body may echo the request."""
    if not answer.ok:
        shown: dict[str, Any] = {"status": answer.status}
        if answer.error:
            shown["error"] = _cut(answer.error, VALUE_CHARS)
        return shown
    if not comparator.fields:
        return cut_value(answer.body, VALUE_CHARS)
    return {
        path: cut_value(value, VALUE_CHARS)
        for path, value in select(answer.body, comparator.fields).items()
        if value is not MISSING
    }


def cut_value(value: Any, chars: int) -> Any:
    """The value itself when its JSON is at most `chars` long and standard (finite numbers);
    else its JSON text, cut to `chars`."""
    if isinstance(value, str) and len(value) > chars:
        # Its JSON is longer still: only the part that can be shown is encoded.
        return _cut(json.dumps(value[:chars], ensure_ascii=False), chars)
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False)
    except ValueError:
        text = json.dumps(value, ensure_ascii=False)
    else:
        if len(text) <= chars:
            return value
    return _cut(text, chars)


def _resolve(body: Any, path: str) -> Any:
    value = body
    for key in path.split(".") if path else ():
        if isinstance(value, dict) and key in value:
            value = value[key]
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            return MISSING
    return value


def _unanswered(comparator: Comparator, baseline: Answer, candidate: Answer) -> Outcome:
    """At least one side did not answer 2xx."""
    if baseline.status == candidate.status == 0:
        # Neither answered: nothing is known about the candidate, so it is not a sample.
        return Outcome(0, 0)
    if baseline.status == candidate.status:
        return Outcome(1, 1)
    total = 1
    if comparator.type in ("label", "topK"):
        answered = baseline if baseline.ok else candidate
        total = max(_instance_count(comparator, answered.body), 1) if answered.ok else 1
    return Outcome(0, total, _cut(f"status {_status(baseline)} vs {_status(candidate)}"))


def _hook(comparator: Comparator, baseline: Any, candidate: Any, hook: Hook | None) -> Outcome:
    if hook is None:
        raise ValueError(f"comparator {comparator.name} is a hook: a hook function is needed")
    b, c = _hook_view(comparator, baseline), _hook_view(comparator, candidate)
    judged = hook(b, c)
    if isinstance(judged, bool):
        return Outcome(1, 1) if judged else Outcome(0, 1, "hook: disagree")
    min_score = _default(comparator.min_score, 1.0)
    if judged >= min_score:
        return Outcome(1, 1)
    return Outcome(0, 1, _cut(f"hook: score {judged:g} below {min_score:g}"))


def _hook_view(comparator: Comparator, body: Any) -> Any:
    if not comparator.fields:
        return body
    # JSON has no MISSING: an absent field is absent from what the hook gets.
    return {k: v for k, v in select(body, comparator.fields).items() if v is not MISSING}


def _instances(value: Any, nested: bool) -> list[Any] | None:
    """The field as a list of instances: a list, or one instance on its own (a label; for topK
    a list of scores). None when absent."""
    if value is MISSING:
        return None
    if nested:
        if isinstance(value, list) and value and all(isinstance(v, list) for v in value):
            return value
        return [value]
    return value if isinstance(value, list) else [value]


def _instance_count(comparator: Comparator, body: Any) -> int:
    instances = _instances(_resolve(body, comparator.fields[0]), comparator.type == "topK")
    return len(instances or ())


def _labels(path: str, baseline: Any, candidate: Any) -> Outcome:
    def differ(b: Any, c: Any) -> str | None:
        if b is not MISSING and c is not MISSING and _json_equal(b, c):
            return None
        return f"{_show(b)} vs {_show(c)}"

    return _per_instance(path, _instances(baseline, False), _instances(candidate, False), differ)


def _top_k(path: str, baseline: Any, candidate: Any, k: int, min_overlap: float) -> Outcome:
    b, c = _instances(baseline, True), _instances(candidate, True)
    return _per_instance(path, b, c, lambda b_i, c_i: _top_k_difference(b_i, c_i, k, min_overlap))


def _per_instance(
    path: str,
    baseline: list[Any] | None,
    candidate: list[Any] | None,
    differ: Callable[[Any, Any], str | None],
) -> Outcome:
    """A sample per instance; the longer list's extra instances disagree."""
    if baseline is None or candidate is None:
        return _absent(path, baseline, candidate)
    total = max(len(baseline), len(candidate))
    agreed, detail = 0, ""
    for i in range(total):
        b = baseline[i] if i < len(baseline) else MISSING
        c = candidate[i] if i < len(candidate) else MISSING
        why = differ(b, c)
        if why is None:
            agreed += 1
        elif not detail:
            detail = _cut(f"{_join(path, i)}: {why}")
    return Outcome(agreed, total, detail)


def _top_k_difference(baseline: Any, candidate: Any, k: int, min_overlap: float) -> str | None:
    if not _scores(baseline) or not _scores(candidate):
        return f"not both lists of numbers: {_show(baseline)} vs {_show(candidate)}"
    if len(baseline) != len(candidate):
        return f"{len(baseline)} scores vs {len(candidate)}"
    k = min(k, len(baseline))
    if k == 0:
        return None
    b_top, c_top = _top(baseline, k), _top(candidate, k)
    if len(set(b_top) & set(c_top)) / k >= min_overlap:
        return None
    return f"top {k} positions {b_top} vs {c_top}"


def _scores(value: Any) -> bool:
    # NaN has no rank, so an instance with one cannot agree.
    return isinstance(value, list) and all(_is_number(v) and not math.isnan(v) for v in value)


def _top(scores: list[float], k: int) -> list[int]:
    """Positions of the k largest scores, ties to the lower position."""
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:k]


def _absent(path: str, baseline: list[Any] | None, candidate: list[Any] | None) -> Outcome:
    # A field absent from both is a misconfigured path more often than agreement: it fails loudly.
    total = max(len(baseline or ()), len(candidate or ()), 1)
    shown = "missing" if baseline is None else f"{len(baseline)} instances"
    other = "missing" if candidate is None else f"{len(candidate)} instances"
    return Outcome(0, total, _cut(f"{path}: {shown} vs {other}"))


def _close(absolute: float, relative: float) -> Callable[[Any, Any], bool]:
    """Numbers within tolerance (math.isclose); anything else equal as JSON."""

    def close(a: Any, b: Any) -> bool:
        if _is_number(a) and _is_number(b):
            # The same NaN twice is the same answer; math.isclose would call it different.
            if math.isnan(a) or math.isnan(b):
                return math.isnan(a) and math.isnan(b)
            return math.isclose(a, b, rel_tol=relative, abs_tol=absolute)
        return _json_equal(a, b)

    return close


def _first_difference(
    path: str, baseline: Any, candidate: Any, equal: Callable[[Any, Any], bool]
) -> str | None:
    """The path and values of the first leaf where they differ (containers walked alike)."""
    if isinstance(baseline, dict) and isinstance(candidate, dict):
        keys = sorted(baseline.keys() | candidate.keys(), key=str)
        pairs = [
            (_join(path, k), baseline.get(k, MISSING), candidate.get(k, MISSING)) for k in keys
        ]
    elif isinstance(baseline, list) and isinstance(candidate, list):
        if len(baseline) != len(candidate):
            return f"{path or '(answer)'}: {len(baseline)} elements vs {len(candidate)}"
        pairs = [
            (_join(path, i), b, c) for i, (b, c) in enumerate(zip(baseline, candidate, strict=True))
        ]
    else:
        if baseline is MISSING or candidate is MISSING or not equal(baseline, candidate):
            return f"{path or '(answer)'}: {_show(baseline)} vs {_show(candidate)}"
        return None
    differences = (_first_difference(p, b, c, equal) for p, b, c in pairs)
    return next((d for d in differences if d is not None), None)


def _json_equal(a: Any, b: Any) -> bool:
    """Equal as JSON values: 1 and 1.0 are one number, true is not 1, NaN is NaN (the same
    text), objects ignore key order."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if _is_number(a) and _is_number(b):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and bool(a == b)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _default(value: float | None, default: float) -> float:
    return default if value is None else value


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def _status(answer: Answer) -> str:
    return f"error ({answer.error})" if answer.status == 0 else str(answer.status)


def _show(value: Any) -> str:
    return _cut(_SHORT.repr(value), _DETAIL_VALUE_CHARS)


def _cut(text: str, chars: int = DETAIL_CHARS) -> str:
    """One line of at most `chars` characters."""
    line = " ".join(text.split())
    return line if len(line) <= chars else line[: chars - 3] + "..."
