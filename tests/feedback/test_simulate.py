import itertools

import numpy as np
import pytest
from scipy import stats

from cascade.policy import ThresholdSet
from feedback.costs import StageCosts
from feedback.estimate import estimate
from feedback.oracle import WorldTruth
from feedback.sample import AuditSample
from feedback.simulate import demo_world
from feedback.tables import ThresholdGrid

COSTS = StageCosts(stage1=1e-5, stage2=2e-4, human=0.05, miss=1.0, false_block=0.5)
GRID = ThresholdGrid.default(per_side=4)


@pytest.fixture(scope="module")
def truth() -> WorldTruth:
    return WorldTruth(demo_world(), GRID, COSTS)


def test_cells_are_exact_bivariate_normal_probabilities() -> None:
    world = demo_world(disguised=0.0)
    benign, harmful = world.cells(GRID.values)
    assert benign.sum() + harmful.sum() == pytest.approx(1.0, abs=1e-12)
    assert harmful.sum() == pytest.approx(world.prevalence, abs=1e-12)
    (c,) = world.harmful
    cov = [[c.sd1**2, c.corr * c.sd1 * c.sd2], [c.corr * c.sd1 * c.sd2, c.sd2**2]]
    v = GRID.values
    for a, b in [(3, 5), (6, 2), (7, 7)]:
        edge = np.log(np.array([v[a], v[b]]) / (1 - np.array([v[a], v[b]])))
        law = stats.multivariate_normal.cdf(
            edge, [c.mean1, c.mean2], cov, abseps=1e-12, releps=1e-10
        )
        exact = world.prevalence * law
        assert harmful[:a, :b].sum() == pytest.approx(exact, rel=1e-6)


def test_draws_follow_the_cells() -> None:
    world = demo_world()
    _, harmful = world.cells(GRID.values)
    s1, s2, label = world.draw(np.random.default_rng(2), 400_000)
    counted = np.zeros_like(harmful)
    np.add.at(counted, (GRID.bins(s1[label == 1]), GRID.bins(s2[label == 1])), 1.0)
    expected = harmful * len(s1)
    big = expected > 50
    z = (counted[big] - expected[big]) / np.sqrt(expected[big])
    assert np.max(np.abs(z)) < 5 and abs(np.mean(z)) < 0.5


def test_shift_moves_only_the_named_class() -> None:
    world = demo_world()
    moved = world.shifted(harmful_logit=-0.5)
    assert all(m.mean1 == c.mean1 - 0.5 for m, c in zip(moved.harmful, world.harmful, strict=True))
    assert moved.benign == world.benign


def test_truth_of_a_set_matches_the_estimator_on_a_huge_sample(truth: WorldTruth) -> None:
    v = GRID.values
    ts = ThresholdSet(v[3], v[-3], v[4], v[-4])
    s1, s2, label = truth.world.draw(np.random.default_rng(4), 1_000_000)
    est = estimate(AuditSample.of(s1, s2, label, 0.02), ts, COSTS)  # SEs of an i.i.d. sample
    got = truth.of(ts)
    assert got.miss_rate == pytest.approx(est.miss_rate, abs=4 * est.se["miss_rate"])
    assert got.cost == pytest.approx(est.cost, abs=4 * est.se["cost"])
    with pytest.raises(ValueError, match="not on the grid"):
        truth.of(ThresholdSet(0.0123, 0.9, 0.1, 0.9))


def test_optimum_is_the_exhaustive_cheapest_within_the_bound(truth: WorldTruth) -> None:
    alpha = 0.002
    _, best = truth.optimum(alpha)
    assert best.miss_rate <= alpha
    size, n_lo, v = GRID.size, GRID.n_lo, GRID.values
    for i, k in itertools.product(range(n_lo), repeat=2):
        for j, m in itertools.product(range(i, size), range(k, size)):
            other = truth.of(ThresholdSet(v[i], v[j], v[k], v[m]))
            assert other.miss_rate > alpha or other.cost >= best.cost - 1e-15
    shares = truth.cost_at_budget(alpha, np.array([0.25, 0.5, 1.0]))
    assert np.all(np.diff(shares) <= 1e-12) and shares[-1] == pytest.approx(1.0)
    assert truth.median_limit(50_000, alpha, 0.1) <= truth.median_limit(5000, alpha, 0.1)
    assert truth.median_limit(50_000, alpha, 0.1) >= 1.0
