"""The validation report: every source's figures per comparator, a few disagreements (the
compared fields only) and the verdict; as compact JSON that fits a termination message (which
the operator copies into status.validation) and as text for `stratus validate`."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from stratus.validation.compare import cut_value
from stratus.validation.stats import Decision, Tally, Verdict

# The kubelet keeps at most this much of a termination message.
TERMINATION_MESSAGE_BYTES = 4096
REASON_CHARS = 600
# Example values are cut harder and harder, then examples dropped, until the JSON fits.
_EXAMPLE_CUTS = (200, 80, 24)

Source = Literal["replay", "shadow"]


@dataclass
class Example:
    """One disagreement: the compared fields of both answers (see compare.redact)."""

    comparator: str
    source: Source
    baseline: Any
    candidate: Any
    detail: str
    line: int | None = None  # the request's line in the replay's request set


@dataclass
class SourceResult:
    """One source's figures: per comparator, its tally and decision; accuracy maps candidate
    and baseline to their agreement with the request set's expected answers."""

    source: Source
    tallies: dict[str, Tally]
    decisions: dict[str, Decision]
    requests: int = 0
    errors: int = 0
    skipped: int = 0
    accuracy: dict[str, float] = field(default_factory=dict)


@dataclass
class Report:
    """failure: why validation failed outside any comparator (a bad configuration or request
    set, the timeout); it makes the verdict Failed."""

    sources: list[SourceResult] = field(default_factory=list)
    examples: list[Example] = field(default_factory=list)
    overhead_ms: dict[str, float] = field(default_factory=dict)
    failure: str = ""

    @property
    def verdict(self) -> Verdict:
        """Failed if anything failed; Passed if every decision passed; else Pending."""
        verdicts = [d.verdict for s in self.sources for d in s.decisions.values()]
        if self.failure or "Failed" in verdicts:
            return "Failed"
        if verdicts and all(v == "Passed" for v in verdicts):
            return "Passed"
        return "Pending"

    @property
    def reason(self) -> str:
        """The failure, else the reasons of the decisions that make the verdict."""
        if self.failure:
            return _cut(self.failure, REASON_CHARS)
        verdict = self.verdict
        reasons = [
            f"{s.source}: {d.reason}"
            for s in self.sources
            for d in s.decisions.values()
            if verdict in ("Passed", d.verdict)
        ]
        return _cut("; ".join(reasons) or "nothing compared yet", REASON_CHARS)

    def to_json(self, limit: int = TERMINATION_MESSAGE_BYTES) -> str:
        """Compact JSON (camelCase) of at most `limit` bytes: example values are cut, then
        examples dropped, then the figures, until it fits."""
        document = self._document()
        for chars in _EXAMPLE_CUTS:
            document["examples"] = [_example(e, chars) for e in self.examples]
            text = _dump(document)
            if len(text) <= limit:
                return text
        while document["examples"]:
            document["examples"].pop()
            text = _dump(document)
            if len(text) <= limit:
                return text
        # Only absurd figures (or limit) get here: the verdict and as much reason as fits.
        reason = self.reason
        while True:
            text = _dump({"verdict": self.verdict, "reason": reason})
            if len(text) <= limit or not reason:
                return text
            reason = _cut(reason, len(reason) // 2) if len(reason) > 6 else ""

    def render(self) -> str:
        """Human-readable, for `stratus validate`."""
        lines = [f"{self.verdict}: {self.reason}", ""]
        rows = [("SOURCE", "COMPARATOR", "SAMPLES", "AGREEMENT", "NOISE", "ADJUSTED", "VERDICT")]
        for result in self.sources:
            for name, tally in result.tallies.items():
                decision = result.decisions.get(name)
                rows.append(
                    (
                        result.source,
                        name,
                        str(tally.compared),
                        _percent(tally.agreement),
                        _percent(tally.noise_floor if tally.noise_compared else None),
                        _percent(tally.adjusted),
                        decision.verdict if decision else "Pending",
                    )
                )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines += [
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            for row in rows
        ]
        for result in self.sources:
            lines.append(
                f"{result.source}: {result.requests} requests, {result.errors} errors, "
                f"{result.skipped} skipped"
                + "".join(f", {who} accuracy {_percent(a)}" for who, a in result.accuracy.items())
            )
        if self.overhead_ms:
            shown = ", ".join(f"{k} {v:.1f} ms" for k, v in self.overhead_ms.items())
            lines.append(f"shadow overhead: {shown}")
        if self.examples:
            lines += ["", "Disagreements:"]
        for example in self.examples:
            where = f" line {example.line}" if example.line is not None else ""
            lines += [
                f"  {example.comparator} ({example.source}{where}): {example.detail}",
                f"    baseline:  {_dump(cut_value(example.baseline, 200))}",
                f"    candidate: {_dump(cut_value(example.candidate, 200))}",
            ]
        return "\n".join(lines)

    def _document(self) -> dict[str, Any]:
        results = []
        for result in self.sources:
            for name, tally in result.tallies.items():
                decision = result.decisions.get(name)
                entry: dict[str, Any] = {
                    "name": name,
                    "source": result.source,
                    "samples": tally.compared,
                    "agreement": _round(tally.agreement),
                    "noiseFloor": _round(tally.noise_floor if tally.noise_compared else None),
                    "adjusted": _round(tally.adjusted),
                    "verdict": decision.verdict if decision else "Pending",
                }
                results.append({k: v for k, v in entry.items() if v is not None})
        document: dict[str, Any] = {
            "verdict": self.verdict,
            "reason": self.reason,
            "results": results,
            "requests": {s.source: s.requests for s in self.sources},
            "errors": {s.source: s.errors for s in self.sources},
            "skipped": {s.source: s.skipped for s in self.sources},
        }
        accuracy = {
            f"{s.source}/{who}": _round(a) for s in self.sources for who, a in s.accuracy.items()
        }
        if accuracy:
            document["accuracy"] = {k: v for k, v in accuracy.items() if v is not None}
        overhead = {k: _round(v, 3) for k, v in self.overhead_ms.items()}
        if overhead:
            document["shadowOverheadMs"] = {k: v for k, v in overhead.items() if v is not None}
        return document


def _example(example: Example, chars: int) -> dict[str, Any]:
    shown: dict[str, Any] = {
        "comparator": example.comparator,
        "source": example.source,
        "detail": _cut(example.detail, chars),
        "baseline": _cut_fields(example.baseline, chars),
        "candidate": _cut_fields(example.candidate, chars),
    }
    if example.line is not None:
        shown["line"] = example.line
    return shown


def _cut_fields(shown: Any, chars: int) -> Any:
    """compare.redact's {path: value} cut per value; anything else cut whole."""
    if isinstance(shown, dict):
        return {_cut(str(k), chars): cut_value(v, chars) for k, v in shown.items()}
    return cut_value(shown, chars)


def _round(value: float | None, digits: int = 4) -> float | None:
    # NaN and infinity are not JSON; the API server would refuse the status.
    if value is None or not math.isfinite(value):
        return None
    return round(value, digits)


def _percent(share: float | None) -> str:
    return "-" if share is None else f"{share * 100:.1f}%"


def _dump(document: Any) -> str:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def _cut(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[: max(0, chars - 3)] + "..."
