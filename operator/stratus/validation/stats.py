"""A comparator's tally of samples and its decision: agreement beyond the baseline's own
disagreement (the noise floor) against minAgreement, failing early only when that is certain."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from stratus.validation.compare import Outcome

Verdict = Literal["Pending", "Passed", "Failed"]
# One-sided 99.9%: an early failure is wrong at most once in a thousand by chance, per side.
EARLY_Z = 3.090
MIN_EARLY_SAMPLES = 100


@dataclass
class Tally:
    """Samples of the candidate against the baseline, and of the baseline against itself."""

    compared: int = 0
    agreed: int = 0
    noise_compared: int = 0
    noise_agreed: int = 0

    def add(self, outcome: Outcome, *, noise: bool = False) -> None:
        if noise:
            self.noise_compared += outcome.total
            self.noise_agreed += outcome.agreed
        else:
            self.compared += outcome.total
            self.agreed += outcome.agreed

    @property
    def agreement(self) -> float | None:
        return self.agreed / self.compared if self.compared else None

    @property
    def noise_floor(self) -> float:
        """The baseline's disagreement with itself; 0 without noise samples."""
        if not self.noise_compared:
            return 0.0
        return 1 - self.noise_agreed / self.noise_compared

    @property
    def adjusted(self) -> float | None:
        """Agreement counting only the disagreement beyond the noise floor."""
        if self.agreement is None:
            return None
        return 1 - max(0.0, (1 - self.agreement) - self.noise_floor)


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    reason: str


def decide(
    name: str, tally: Tally, min_agreement: float, samples: int | None, *, final: bool = False
) -> Decision:
    """Passed once `samples` are compared with adjusted agreement at or above min_agreement;
    Failed then below it, or earlier when even the most favourable reading of the figures is
    below it. final: the source is spent (or the time is up), so decided on what there is.
    samples None: no sample size is asked for (a replay is judged over its whole set)."""
    if tally.compared == 0:
        return Decision("Failed" if final else "Pending", f"{name}: no samples compared")
    figures = _figures(tally, min_agreement)
    if samples is None or tally.compared >= samples:
        passed = _meets(tally.adjusted or 0.0, min_agreement)
        return Decision("Passed" if passed else "Failed", f"{name}: {figures}")
    if final:
        return Decision("Failed", f"{name}: only {tally.compared} of {samples} samples ({figures})")
    if _certainly_below(tally, min_agreement, samples):
        return Decision("Failed", f"{name}: {figures}, already certain")
    return Decision("Pending", f"{name}: {figures}, {tally.compared} of {samples} samples")


def wilson(successes: int, n: int, z: float) -> tuple[float, float]:
    """Wilson score interval of a proportion, (0, 1) without trials."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _certainly_below(tally: Tally, min_agreement: float, samples: int) -> bool:
    if tally.compared < max(MIN_EARLY_SAMPLES, samples // 10):
        return False
    # The fewest disagreements the candidate plausibly has, less the most noise the baseline
    # plausibly has: noise alone cannot fail a candidate early by chance.
    disagreement, _ = wilson(tally.compared - tally.agreed, tally.compared, EARLY_Z)
    noise = 0.0
    if tally.noise_compared:
        _, noise = wilson(tally.noise_compared - tally.noise_agreed, tally.noise_compared, EARLY_Z)
    return disagreement - noise > 1 - min_agreement


def _figures(tally: Tally, min_agreement: float) -> str:
    """e.g. '94.8% agreement, 95.2% beyond a 0.4% noise floor, is below 98.0% over 1000
    samples'."""
    judged = tally.adjusted or 0.0
    relation = "is at least" if _meets(judged, min_agreement) else "is below"
    figures = f"{_percent(tally.agreement or 0.0)} agreement"
    if tally.noise_compared:
        figures += f", {_percent(judged)} beyond a {_percent(tally.noise_floor)} noise floor,"
    return f"{figures} {relation} {_percent(min_agreement)} over {tally.compared} samples"


def _meets(adjusted: float, min_agreement: float) -> bool:
    # 1 - (1 - 0.99) is not quite 0.99 in floating point; exactly the threshold passes.
    return adjusted >= min_agreement - 1e-12


def _percent(share: float) -> str:
    return f"{share * 100:.1f}%"
