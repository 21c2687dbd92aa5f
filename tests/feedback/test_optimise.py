import itertools

import numpy as np
import pytest

from cascade.policy import ALLOW_CODE, ThresholdSet, route_arrays
from feedback.costs import StageCosts
from feedback.estimate import estimate
from feedback.optimise import FALLBACK, ThresholdGrid, certify, cheapest, optimise
from feedback.sample import AuditSample
from tests.feedback.populations import Population, population

COSTS = StageCosts(stage1=1e-5, stage2=2e-4, human=0.05, miss=5.0, false_block=0.5)
COARSE = ThresholdGrid.default(per_side=4)


@pytest.fixture(scope="module")
def pop() -> Population:
    return population(120_000, seed=11)


def _varying_p_sample(pop: Population, n: int, seed: int) -> AuditSample:
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, pop.n, n)
    p = np.where(rng.random(n) < 0.5, 0.02, 0.05)
    return AuditSample.of(pop.s1[idx], pop.s2[idx], pop.label[idx], p)


def _exhaustive(
    sample: AuditSample, grid: ThresholdGrid, allowed: np.ndarray
) -> tuple[float, ThresholdSet]:
    """Every candidate of the grid through the plain estimator: the reference optimum."""
    v, best = grid.values, (np.inf, FALLBACK)
    for i, k in zip(*np.nonzero(allowed), strict=True):
        for j, m in itertools.product(range(i, len(v)), range(k, len(v))):
            ts = ThresholdSet(v[i], v[j], v[k], v[m])
            cost = estimate(sample, ts, COSTS).cost
            if cost < best[0]:
                best = (cost, ts)
    return best


@pytest.mark.parametrize("population_known", [False, True])
def test_optimiser_matches_exhaustive_grid_search(pop: Population, population_known: bool) -> None:
    sample = _varying_p_sample(pop, 4000, seed=1)
    if population_known:
        sample = AuditSample(sample.s1, sample.s2, sample.label, sample.p, population=150_000)
    alpha, delta = 0.02, 0.1
    result = optimise(sample, COSTS, alpha=alpha, delta=delta, grid=COARSE)
    cert = certify(sample, COARSE, alpha, delta)
    best_cost, best_ts = _exhaustive(sample, COARSE, cert.certified)
    assert result.certified and not result.fallback
    assert result.estimate is not None
    assert result.estimate.cost <= best_cost * 1.01
    assert result.miss_rate_bound <= alpha
    # The choice is itself certified: its allow pair passed the test.
    lo = list(COARSE.values)
    assert cert.certified[lo.index(result.thresholds.t1_lo), lo.index(result.thresholds.t2_lo)]
    assert best_ts.t1_lo > 0 or best_ts.t2_lo > 0  # a real optimum, not the trivial set


def _true_miss(pop: Population, ts: ThresholdSet) -> float:
    final, _ = route_arrays(pop.s1, pop.s2, ts)
    return float(np.mean((pop.label == 1) & (final == ALLOW_CODE)))


def _naive(
    sample: AuditSample, grid: ThresholdGrid, costs: StageCosts, alpha: float
) -> ThresholdSet:
    """Cheapest set whose *sample* miss rate is <= alpha: no bound, no multiplicity."""
    harmful = sample.label == 1
    lo = grid.values[: grid.n_lo]
    env = np.array(
        [[np.sum(harmful & ((sample.s1 < a) | (sample.s2 < b))) for b in lo] for a in lo]
    )
    i, j, k, m = cheapest(sample, grid, costs, env / sample.n <= alpha)
    v = grid.values
    return ThresholdSet(v[i], v[j], v[k], v[m])


def test_miss_rate_guarantee_holds_over_repeated_calibration_draws(pop: Population) -> None:
    alpha, delta, draws = 0.005, 0.1, 200
    # Misses priced low enough that cost alone would allow more than alpha: the bound binds.
    costs = StageCosts(stage1=1e-5, stage2=2e-4, human=0.05, miss=0.1, false_block=0.5)
    grid = ThresholdGrid.default()
    rng = np.random.default_rng(2024)
    true_miss: list[float] = []
    naive_miss: list[float] = []
    fallbacks = 0
    for _ in range(draws):
        sample = pop.draw(rng, 3000)
        result = optimise(sample, costs, alpha=alpha, delta=delta, grid=grid)
        fallbacks += result.fallback
        true_miss.append(_true_miss(pop, result.thresholds))
        if len(naive_miss) < 50:
            naive_miss.append(_true_miss(pop, _naive(sample, grid, costs, alpha)))
    violations = np.mean(np.asarray(true_miss) > alpha)
    assert violations <= delta
    assert fallbacks < draws / 2  # the guarantee is not bought by giving up
    assert np.mean(true_miss) > alpha / 4  # and the chosen sets do use the budget
    # Teeth: without the bound, the cheapest "empirically fine" set breaks alpha far more often.
    assert np.mean(np.asarray(naive_miss) > alpha) > 3 * delta


def test_nothing_certifiable_returns_the_flagged_fallback(pop: Population) -> None:
    tiny = pop.draw(np.random.default_rng(0), 100)
    result = optimise(tiny, COSTS, alpha=0.01, delta=0.05)
    assert result.fallback and not result.certified
    assert result.thresholds == FALLBACK
    assert "nothing certified" in result.note
    assert result.estimate is not None and result.estimate.miss_rate == 0.0
    empty = optimise(AuditSample.of([], [], [], []), COSTS, alpha=0.01, delta=0.05)
    assert empty.fallback and empty.estimate is None and empty.thresholds == FALLBACK


def test_fallback_allows_nothing_automatically() -> None:
    s = np.linspace(0.0, 1.0, 101)
    final, _ = route_arrays(s, s, FALLBACK)
    assert not np.any(final == ALLOW_CODE)


def test_review_cap_is_respected_and_costs_something(pop: Population) -> None:
    sample = pop.draw(np.random.default_rng(5), 5000)
    free = optimise(sample, COSTS, alpha=0.02, delta=0.1, grid=COARSE)
    assert free.estimate is not None and free.estimate.human_share > 0.01
    traffic = 10_000.0
    cap = free.estimate.human_share * traffic / 2
    capped = optimise(sample, COSTS, alpha=0.02, delta=0.1, grid=COARSE,
                      traffic_per_hour=traffic, max_reviews_per_hour=cap)  # fmt: skip
    assert capped.certified and capped.estimate is not None
    assert capped.estimate.human_share * traffic <= cap + 1e-9
    assert capped.estimate.cost > free.estimate.cost
    # No reviewers at all: stage 2 must decide everything it sees (t2_lo == t2_hi).
    none = optimise(sample, COSTS, alpha=0.02, delta=0.1, grid=COARSE,
                    traffic_per_hour=traffic, max_reviews_per_hour=0.0)  # fmt: skip
    assert none.certified and none.estimate is not None
    assert none.estimate.human_share == 0.0
    assert none.thresholds.t2_lo == none.thresholds.t2_hi


def test_ceiling_only_tightens_allow_thresholds(pop: Population) -> None:
    sample = pop.draw(np.random.default_rng(6), 5000)
    free = optimise(sample, COSTS, alpha=0.02, delta=0.1)
    ceiling = ThresholdSet(
        t1_lo=free.thresholds.t1_lo / 2, t1_hi=0.99, t2_lo=free.thresholds.t2_lo / 2, t2_hi=0.9
    )
    tight = optimise(sample, COSTS, alpha=0.02, delta=0.1, ceiling=ceiling)
    assert tight.thresholds.t1_lo <= ceiling.t1_lo
    assert tight.thresholds.t2_lo <= ceiling.t2_lo
    assert tight.estimate is not None and free.estimate is not None
    assert tight.estimate.miss_rate <= free.estimate.miss_rate


def test_grid_rejects_bad_values() -> None:
    with pytest.raises(ValueError):
        ThresholdGrid(np.array([0.1, 0.5, 1.0]))
    assert ThresholdGrid.default(per_side=4).n_lo == 5  # 0 and four values up to 0.5
