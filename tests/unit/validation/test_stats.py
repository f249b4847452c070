"""The statistics: tallies and the noise floor, Wilson intervals, the decision at the sample
size and before it, and a seeded simulation of noisy models against the early-failure rule."""

from __future__ import annotations

import random
import statistics

import pytest

from stratus.validation.compare import Outcome
from stratus.validation.stats import Decision, Tally, decide, wilson


def tally(compared: int, agreed: int, noise_compared: int = 0, noise_agreed: int = 0) -> Tally:
    return Tally(compared, agreed, noise_compared, noise_agreed)


def test_tally_adds_samples_and_noise_apart() -> None:
    t = Tally()
    assert (t.agreement, t.noise_floor, t.adjusted) == (None, 0.0, None)
    t.add(Outcome(3, 4))
    t.add(Outcome(0, 0))
    t.add(Outcome(1, 1, "x"), noise=True)
    t.add(Outcome(8, 9), noise=True)
    assert t == Tally(compared=4, agreed=3, noise_compared=10, noise_agreed=9)
    assert t.agreement == 0.75
    assert t.noise_floor == pytest.approx(0.1)
    assert t.adjusted == pytest.approx(0.85)


@pytest.mark.parametrize(
    ("figures", "adjusted"),
    [
        (tally(1000, 948, 1000, 996), 0.952),  # 5.2% disagreement less a 0.4% floor
        (tally(1000, 990, 1000, 980), 1.0),  # the floor exceeds the disagreement: never > 1
        (tally(1000, 990), 0.99),  # no noise samples: no floor
        (tally(100, 100, 100, 50), 1.0),
    ],
)
def test_adjusted_discounts_the_noise_floor(figures: Tally, adjusted: float) -> None:
    assert figures.adjusted == pytest.approx(adjusted)


def test_wilson_matches_the_formula() -> None:
    low, high = wilson(81, 263, 1.96)
    assert (low, high) == pytest.approx((0.2553, 0.3662), abs=1e-4)
    assert wilson(0, 10, 1.96)[0] == 0.0
    assert wilson(10, 10, 1.96)[1] == pytest.approx(1.0)
    assert wilson(0, 0, 3.09) == (0.0, 1.0)  # nothing known
    # Narrower with more trials, wider with a larger z.
    assert wilson(500, 1000, 1.96)[1] - wilson(500, 1000, 1.96)[0] < 0.07
    assert wilson(50, 100, 3.09)[0] < wilson(50, 100, 1.96)[0]


@pytest.mark.parametrize(
    ("figures", "samples", "final", "verdict", "reason"),
    [
        (
            tally(1000, 948, 1000, 996),
            1000,
            False,
            "Failed",
            "labels: 94.8% agreement, 95.2% beyond a 0.4% noise floor, is below 98.0% over "
            "1000 samples",
        ),
        (
            tally(1000, 985, 1000, 990),
            1000,
            False,
            "Passed",
            "labels: 98.5% agreement, 99.5% beyond a 1.0% noise floor, is at least 98.0% over "
            "1000 samples",
        ),
        (tally(1000, 980), 1000, False, "Passed", None),  # exactly the threshold passes
        (tally(1000, 979), 1000, False, "Failed", None),
        (tally(1500, 1480), 1000, False, "Passed", None),  # past the sample size
        (
            tally(500, 490, 500, 500),
            1000,
            False,
            "Pending",
            "labels: 98.0% agreement, 98.0% beyond a 0.0% noise floor, is at least 98.0% over "
            "500 samples, 500 of 1000 samples",
        ),
        (tally(500, 300), 1000, False, "Failed", None),  # certainly below already
        (tally(99, 0), 1000, False, "Pending", None),  # too few to fail early
        (tally(100, 0), 1000, False, "Failed", None),
        (tally(500, 300), 10000, False, "Pending", None),  # before a tenth of the samples
        (tally(1000, 600), 10000, False, "Failed", None),
        (
            tally(500, 500),
            1000,
            True,
            "Failed",
            "labels: only 500 of 1000 samples (100.0% agreement is at least 98.0% over 500 "
            "samples)",
        ),
        (tally(500, 500), None, True, "Passed", None),  # replay: judged over the set
        (tally(500, 480), None, True, "Failed", None),
        (tally(0, 0), 1000, False, "Pending", "labels: no samples compared"),
        (tally(0, 0), 1000, True, "Failed", "labels: no samples compared"),
        (tally(0, 0), None, True, "Failed", None),
        (tally(0, 0), 0, False, "Pending", None),  # a replay that compared nothing yet
    ],
)
def test_decide(
    figures: Tally, samples: int | None, final: bool, verdict: str, reason: str | None
) -> None:
    decision = decide("labels", figures, 0.98, samples, final=final)
    assert decision.verdict == verdict
    if reason is not None:
        assert decision.reason == reason


def test_noise_never_fails_early_by_chance() -> None:
    # 10% disagreement is certainly beyond 2%, but so is a baseline's 10% noise floor: what
    # the candidate adds cannot be told from noise yet.
    noisy = tally(500, 450, 500, 450)
    assert decide("c", noisy, 0.98, 1000).verdict == "Pending"
    assert decide("c", tally(500, 450), 0.98, 1000).verdict == "Failed"
    # With the whole sample, noise is discounted and it passes.
    assert decide("c", tally(1000, 900, 1000, 900), 0.98, 1000).verdict == "Passed"


# The seeded simulation. A model labels 4 instances per request from 10 classes; a noisy model
# answers a random other class for 1% of instances, independently on each call (so a baseline
# asked twice disagrees with itself on about 2%). The candidate either is the same noisy model,
# or flips another 5% of instances. Shadow figures: 1000 samples, minAgreement 0.98.
CLASSES = 10
INSTANCES = 4
NOISE = 0.01
FLIP = 0.05
SAMPLES = 1000
MIN_AGREEMENT = 0.98


def _label(rng: random.Random, flip: float) -> int:
    """The true label is 0 (the classes are symmetric); a flip answers another."""
    return rng.randrange(1, CLASSES) if rng.random() < flip else 0


def _run(rng: random.Random, candidate_flip: float, max_samples: int) -> tuple[Decision, int]:
    """Requests until decided: the decision and the samples it took."""
    figures = Tally()
    decision = Decision("Pending", "")
    while figures.compared < max_samples:
        baseline = [_label(rng, NOISE) for _ in range(INSTANCES)]
        again = [_label(rng, NOISE) for _ in range(INSTANCES)]
        # The flipping candidate is the noisy model with a fault on top.
        candidate = [
            _label(rng, NOISE) if rng.random() >= candidate_flip else _label(rng, 1.0)
            for _ in range(INSTANCES)
        ]
        figures.add(
            Outcome(sum(b == c for b, c in zip(baseline, candidate, strict=True)), INSTANCES)
        )
        figures.add(
            Outcome(sum(b == a for b, a in zip(baseline, again, strict=True)), INSTANCES),
            noise=True,
        )
        decision = decide("labels", figures, MIN_AGREEMENT, SAMPLES)
        if decision.verdict != "Pending":
            break
    return decision, figures.compared


def test_simulated_flipping_candidate_fails_within_2000_samples() -> None:
    rng = random.Random(15)  # noqa: S311 - a reproducible simulation, not cryptography
    runs = [_run(rng, FLIP, 2000) for _ in range(200)]
    failed = [samples for decision, samples in runs if decision.verdict == "Failed"]
    assert len(failed) >= 198  # >= 99%
    print(
        f"\n5% flips vs a 1%-noisy baseline: Failed in {len(failed)} of {len(runs)} runs, "
        f"median {statistics.median(failed):.0f} samples to the decision "
        f"(min {min(failed)}, max {max(failed)})"
    )


def test_simulated_identical_noisy_model_passes() -> None:
    rng = random.Random(16)  # noqa: S311 - a reproducible simulation, not cryptography
    runs = [_run(rng, 0.0, 2000)[0].verdict for _ in range(1000)]
    blocked = runs.count("Failed")
    assert runs.count("Pending") == 0
    assert sum(v == "Passed" for v in runs[:20]) >= 19
    assert blocked <= 50  # the whole thousand, as well as the first twenty
    print(f"\nidentical 1%-noisy model: false-block rate {blocked}/1000 = {blocked / 10:.1f}%")
