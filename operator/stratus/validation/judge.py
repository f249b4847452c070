"""Judging pairs of answers with every comparator, for replay and shadow alike: the tallies,
a few examples of disagreement, the errors, and the decisions."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Literal

from stratus.api.validation import Comparator
from stratus.validation import client
from stratus.validation.compare import Answer, Hook, compare, redact
from stratus.validation.report import Example, SourceResult
from stratus.validation.stats import Decision, Tally, decide

EXAMPLES_PER_COMPARATOR = 3
Source = Literal["replay", "shadow"]


class Judge:
    """Thread-safe: the proxy's comparison workers share one."""

    def __init__(
        self,
        source: Source,
        comparators: Sequence[Comparator],
        min_agreement: float,
        *,
        hooks: Callable[[str], Hook] = client.hook,
    ) -> None:
        self.source: Source = source
        self.comparators = list(comparators)
        self.min_agreement = min_agreement
        self.hooks = {c.name: hooks(c.url) for c in self.comparators if c.url}
        self.tallies = {c.name: Tally() for c in self.comparators}
        self.examples: list[Example] = []
        self.requests = 0
        self.errors = 0
        self.skipped = 0
        self.accuracy: dict[str, float] = {}
        self.last_error = ""
        self._lock = threading.Lock()

    def count(self, *, requests: int = 0, errors: int = 0, skipped: int = 0) -> None:
        with self._lock:
            self.requests += requests
            self.errors += errors
            self.skipped += skipped

    def error(self, message: str) -> None:
        with self._lock:
            self.errors += 1
            self.last_error = message

    def judge(
        self,
        baseline: Answer,
        candidate: Answer,
        again: Answer | None = None,
        *,
        line: int | None = None,
    ) -> None:
        """One sample: the candidate against the baseline with every comparator, and the
        baseline against itself (`again`, its second answer) for the noise floor. A baseline
        that could not be reached is an error, not a disagreement; a candidate that could not
        be is a disagreement."""
        if baseline.status == 0:
            self.error(baseline.error)
            return
        if again is not None and again.status == 0:
            again = None
        for comparator in self.comparators:
            hook = self.hooks.get(comparator.name)
            try:
                outcome = compare(comparator, baseline, candidate, hook)
                noise = compare(comparator, baseline, again, hook) if again else None
            except client.HookError as exc:
                self.error(str(exc))
                continue
            with self._lock:
                tally = self.tallies[comparator.name]
                tally.add(outcome)
                if noise is not None:
                    tally.add(noise, noise=True)
                if outcome.agreed < outcome.total and self._room(comparator.name):
                    self.examples.append(
                        Example(
                            comparator=comparator.name,
                            source=self.source,
                            baseline=redact(comparator, baseline),
                            candidate=redact(comparator, candidate),
                            detail=outcome.detail,
                            line=line,
                        )
                    )

    def _room(self, name: str) -> bool:
        return sum(e.comparator == name for e in self.examples) < EXAMPLES_PER_COMPARATOR

    def decisions(self, samples: int | None, *, final: bool = False) -> dict[str, Decision]:
        """Per comparator; samples None: judged over whatever was compared (replay)."""
        with self._lock:
            return {
                c.name: decide(
                    c.name,
                    self.tallies[c.name],
                    c.min_agreement if c.min_agreement is not None else self.min_agreement,
                    samples,
                    final=final,
                )
                for c in self.comparators
            }

    def result(self, samples: int | None, *, final: bool = False) -> SourceResult:
        decisions = self.decisions(samples, final=final)
        with self._lock:
            return SourceResult(
                source=self.source,
                tallies={name: _copy(t) for name, t in self.tallies.items()},
                decisions=decisions,
                requests=self.requests,
                errors=self.errors,
                skipped=self.skipped,
                accuracy=dict(self.accuracy),
            )

    def examples_now(self) -> list[Example]:
        with self._lock:
            return list(self.examples)


def _copy(tally: Tally) -> Tally:
    return Tally(tally.compared, tally.agreed, tally.noise_compared, tally.noise_agreed)


def settled(decisions: dict[str, Decision]) -> bool:
    """Decided: a comparator failed, or every one passed."""
    verdicts = {d.verdict for d in decisions.values()}
    return "Failed" in verdicts or verdicts == {"Passed"}
