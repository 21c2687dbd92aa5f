import itertools

import numpy as np
import pytest

from cascade.policy import ALLOW_CODE, BLOCK_CODE, ThresholdSet, route_arrays
from feedback.costs import StageCosts
from feedback.estimate import estimate
from feedback.optimise import cheapest
from feedback.sample import AuditSample
from feedback.simulate import demo_world
from feedback.tables import (
    CellTables,
    ThresholdGrid,
    cost_per_allow_pair,
    false_block_envelope,
    miss_envelope,
)

COSTS = StageCosts(stage1=1e-5, stage2=2e-4, human=0.05, miss=5.0, false_block=0.5)
GRID = ThresholdGrid.default(per_side=3)


@pytest.fixture(scope="module")
def sample() -> AuditSample:
    s1, s2, label = demo_world(prevalence=0.2).draw(np.random.default_rng(3), 3000)
    p = np.where(np.arange(3000) % 3 == 0, 0.05, 0.02)  # the audit rate changed over time
    return AuditSample.of(s1, s2, label, p)


def _sets(grid: ThresholdGrid) -> list[tuple[int, int, int, int]]:
    size, n_lo = grid.size, grid.n_lo
    return [(i, j, k, m) for i, k in itertools.product(range(n_lo), repeat=2)
            for j in range(i, size) for m in range(k, size)]  # fmt: skip


def _ts(grid: ThresholdGrid, idx: tuple[int, int, int, int]) -> ThresholdSet:
    v = grid.values
    return ThresholdSet(v[idx[0]], v[idx[1]], v[idx[2]], v[idx[3]])


def test_envelopes_count_what_any_completion_can_allow_or_block(sample: AuditSample) -> None:
    benign, harmful = GRID.cells(sample, np.ones(sample.n))
    miss, fb = miss_envelope(harmful, GRID.n_lo), false_block_envelope(benign)
    v = GRID.values
    for i, j, k, m in _sets(GRID):
        final, _ = route_arrays(sample.s1, sample.s2, _ts(GRID, (i, j, k, m)))
        assert np.sum((sample.label == 1) & (final == ALLOW_CODE)) <= miss[i, k]
        assert np.sum((sample.label == 0) & (final == BLOCK_CODE)) <= fb[j, m]
    # And the envelopes are exactly the images they describe.
    h, b = sample.label == 1, sample.label == 0
    assert miss[2, 1] == np.sum(h & ((sample.s1 < v[2]) | (sample.s2 < v[1])))
    assert fb[4, 6] == np.sum(b & ((sample.s1 >= v[4]) | (sample.s2 >= v[6])))


def test_search_matches_the_estimator_over_every_candidate(sample: AuditSample) -> None:
    rng = np.random.default_rng(0)
    allowed = rng.random((GRID.n_lo, GRID.n_lo)) < 0.5
    blockable = rng.random((GRID.size, GRID.size)) < 0.5
    blockable[-1, -1] = True
    for limit in (None, 0.05):
        found = cheapest(sample, GRID, COSTS, allowed, limit, blockable)
        best = min(
            (estimate(sample, _ts(GRID, idx), COSTS).cost, idx)
            for idx in _sets(GRID)
            if allowed[idx[0], idx[2]]
            and blockable[idx[1], idx[3]]
            and (limit is None or estimate(sample, _ts(GRID, idx), COSTS).human_share <= limit)
        )
        assert estimate(sample, _ts(GRID, found), COSTS).cost == pytest.approx(best[0], rel=1e-12)


def test_cost_per_allow_pair_is_the_cheapest_completion(sample: AuditSample) -> None:
    per_pair = cost_per_allow_pair(CellTables.from_sample(sample, GRID), COSTS, GRID.n_lo)
    for i, k in [(0, 0), (2, 3), (3, 1)]:
        best = min(estimate(sample, _ts(GRID, idx), COSTS).cost
                   for idx in _sets(GRID) if (idx[0], idx[2]) == (i, k))  # fmt: skip
        assert per_pair[i, k] == pytest.approx(best, rel=1e-12)


def test_grid_rejects_bad_values() -> None:
    with pytest.raises(ValueError):
        ThresholdGrid(np.array([0.1, 0.5, 1.0]))
    assert ThresholdGrid.default(per_side=4).n_lo == 5  # 0 and four values up to 0.5
