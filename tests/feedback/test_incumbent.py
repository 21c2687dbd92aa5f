"""The retune's champion/challenger rule (feedback.incumbent) in a world whose truth is exact."""

from dataclasses import replace

import numpy as np
import pytest

from cascade.policy import ThresholdSet
from feedback.costs import StageCosts
from feedback.incumbent import compare, covering
from feedback.optimise import optimise
from feedback.oracle import WorldTruth
from feedback.sample import AuditSample
from feedback.simulate import demo_world
from feedback.tables import ThresholdGrid

COSTS = StageCosts(stage1=1e-5, stage2=2e-4, human=0.05, miss=5.0, false_block=0.5)
UNPRICED = replace(COSTS, miss=0.0)
GRID = ThresholdGrid.default(per_side=12)
WORLD = demo_world()
EVERYTHING_TO_HUMANS = ThresholdSet(0.0, 1.0, 0.0, 1.0)


def _sample(rng: np.random.Generator, n: int) -> AuditSample:
    s1, s2, label = WORLD.draw(rng, n)
    return AuditSample.of(s1, s2, label, 0.02)


def test_covering_needs_allow_thresholds_at_most_a_certified_pair() -> None:
    v = GRID.values
    pair = (3, 5)
    under = ThresholdSet(float(v[3]), 0.99, float(v[4]), 0.99)
    over = ThresholdSet(float(v[4]), 0.99, float(v[4]), 0.99)
    assert covering(under, v, [pair]) == [pair]
    assert covering(over, v, [pair]) == []
    assert covering(over, v, [pair, (4, 4)]) == [(4, 4)]


def test_tightening_is_free_and_loosening_needs_evidence() -> None:
    sample = _sample(np.random.default_rng(1), 3000)
    ts = ThresholdSet(0.05, 0.98, 0.1, 0.9)
    same = compare(sample, ts, ts, COSTS)
    assert (same.difference, same.se, same.looser, same.switch) == (0.0, 0.0, False, True)
    # Everything to humans allows nothing: dearer, but it can only miss less, so it is taken.
    tighter = compare(sample, EVERYTHING_TO_HUMANS, ts, COSTS)
    assert tighter.difference > 0 and not tighter.looser and tighter.switch
    # The way back allows more and is much cheaper on the labels: taken.
    back = compare(sample, ts, EVERYTHING_TO_HUMANS, COSTS)
    assert back.looser and back.difference < -3 * back.se and back.switch
    # Allowing everything stage 1 doubts saves reviews but misses: not taken.
    reckless = ThresholdSet(0.9, 0.98, 0.9, 0.99)
    dear = compare(sample, reckless, ts, COSTS)
    assert dear.looser and dear.difference > 0 and not dear.switch


def test_the_set_in_force_stays_when_a_looser_pick_is_not_shown_cheaper() -> None:
    sample = _sample(np.random.default_rng(2), 4000)
    plain = optimise(sample, COSTS, alpha=0.01, delta=0.1, grid=GRID)
    assert plain.certified and not plain.kept and plain.comparison is None
    # Everything to humans: the certificate covers it (it allows nothing), and the pick, looser
    # and far cheaper on the labels, replaces it.
    moved = optimise(sample, COSTS, alpha=0.01, delta=0.1, grid=GRID,
                     incumbent=EVERYTHING_TO_HUMANS)  # fmt: skip
    assert not moved.kept and moved.thresholds == plain.thresholds
    # A set one grid step tighter than the pick at stage 1, and a rule that asks for more
    # evidence than any sample holds: it stays, under the new certificate.
    v = GRID.values
    step = int(np.searchsorted(v, plain.thresholds.t1_lo)) - 1
    tighter = replace(plain.thresholds, t1_lo=float(v[step]), version=7)
    kept = optimise(sample, COSTS, alpha=0.01, delta=0.1, grid=GRID, incumbent=tighter,
                    switch_se=1e9)  # fmt: skip
    assert kept.kept and kept.certified and kept.thresholds == tighter
    assert kept.comparison is not None and kept.comparison.looser
    assert kept.comparison.candidate == plain.thresholds
    assert "kept the set in force" in kept.note
    assert kept.miss_rate_bound <= plain.miss_rate_bound  # its bound: the tightest cover


@pytest.mark.slow
def test_guarantee_holds_when_an_unsafe_incumbent_may_stay() -> None:
    """An incumbent that misses far more than alpha (stage 1 allows all it may, stage 2
    nothing), under a rule that keeps it whenever it may (switch_se huge): any pick with a
    stage-2 allow threshold above 0 is looser than it there, so only the cover check stands in
    the way, and a valid certificate covers it in at most delta of the draws. Without the cover
    check it stayed in all of 60 draws."""
    alpha, delta, draws = 0.005, 0.1, 150
    truth = WorldTruth(WORLD, GRID, UNPRICED)
    v = GRID.values
    unsafe = ThresholdSet(float(v[GRID.n_lo - 1]), 1.0, 0.0, 1.0)
    assert truth.of(unsafe).miss_rate > 4 * alpha
    rng = np.random.default_rng(11)
    broken = kept = 0
    for d in range(draws):
        result = optimise(_sample(rng, 3000), UNPRICED, alpha=alpha, delta=delta, grid=GRID,
                          seed=d, incumbent=unsafe, switch_se=1e9)  # fmt: skip
        kept += result.kept
        broken += truth.of(result.thresholds).miss_rate > alpha
    assert broken / draws <= delta
    assert kept / draws <= delta


@pytest.mark.slow
def test_keeping_the_best_set_costs_no_more_than_retuning_from_scratch() -> None:
    """The true optimum in force, 40 audit samples: the rule keeps it against looser picks in a
    quarter of them or more, and the set it leaves in force costs less on average than the
    optimiser's fresh pick."""
    alpha, delta = 0.01, 0.1
    truth = WorldTruth(WORLD, GRID, COSTS)
    best, best_truth = truth.optimum(alpha)
    rng = np.random.default_rng(5)
    fresh, ruled, kept = [], [], 0
    for d in range(40):
        sample = _sample(rng, 3000)
        plain = optimise(sample, COSTS, alpha=alpha, delta=delta, grid=GRID, seed=d)
        rule = optimise(sample, COSTS, alpha=alpha, delta=delta, grid=GRID, seed=d,
                        incumbent=best)  # fmt: skip
        kept += rule.kept
        fresh.append(truth.of(plain.thresholds).cost)
        ruled.append(truth.of(rule.thresholds).cost)
    assert kept >= 10
    assert np.mean(ruled) < np.mean(fresh)
    assert np.mean(fresh) > best_truth.cost  # the fresh pick pays for the sample's noise
