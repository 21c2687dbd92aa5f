"""What a threshold set truly does in a :class:`feedback.simulate.ScoreWorld`, the true
optimum, and the best any valid certificate could do: the yardsticks of the decisions bench.

Everything here is exact: the world's cell probabilities (:meth:`ScoreWorld.cells`) make every
candidate's cost, miss rate and false-block rate a difference of prefix sums
(:mod:`feedback.tables`), so the optimum is an exhaustive search over the grid with the
*actual* error rates of each set (not their envelopes).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from cascade.policy import ThresholdSet
from feedback.costs import StageCosts
from feedback.risk import critical_count, size_of_test_part
from feedback.sample import FloatArray
from feedback.simulate import ScoreWorld
from feedback.tables import (
    CellTables,
    ThresholdGrid,
    cost_per_allow_pair,
    miss_envelope,
    surfaces,
)

_MISS = StageCosts(stage1=0.0, stage2=0.0, human=0.0, miss=1.0, false_block=0.0)
_FALSE_BLOCK = StageCosts(stage1=0.0, stage2=0.0, human=0.0, miss=0.0, false_block=1.0)


@dataclass(frozen=True)
class Truth:
    """A set's exact cost ($/image) and error rates (fractions of all images)."""

    cost: float
    miss_rate: float
    false_block_rate: float


class WorldTruth:
    """Exact cost and error surfaces of every candidate of ``grid`` in ``world``."""

    def __init__(self, world: ScoreWorld, grid: ThresholdGrid, costs: StageCosts) -> None:
        self.world, self.grid, self.costs = world, grid, costs
        self.benign, self.harmful = world.cells(grid.values)
        self.tables = CellTables.from_cells(self.benign, self.harmful)
        n_lo = grid.n_lo
        self._surfaces = [
            tuple(surfaces(self.tables, i, c, n_lo)[0] for c in (costs, _MISS, _FALSE_BLOCK))
            for i in range(n_lo)
        ]

    def indices(self, ts: ThresholdSet) -> tuple[int, int, int, int]:
        v, wanted = self.grid.values, (ts.t1_lo, ts.t1_hi, ts.t2_lo, ts.t2_hi)
        i, j, k, m = (int(np.searchsorted(v, x)) for x in wanted)
        if any(a >= len(v) or v[a] != x for a, x in zip((i, j, k, m), wanted, strict=True)):
            raise ValueError(f"{ts} is not on the grid")
        return i, j, k, m

    def of(self, ts: ThresholdSet) -> Truth:
        """The exact truth of one set of grid values."""
        i, j, k, m = self.indices(ts)
        cost, miss, fb = self._surfaces[i]
        return Truth(float(cost[j, k, m]), float(miss[j, k, m]), float(fb[j, k, m]))

    def optimum(self, alpha: float, beta: float | None = None) -> tuple[ThresholdSet, Truth]:
        """The cheapest set of the grid whose true miss rate is <= alpha (and false-block rate
        <= beta): exhaustive."""
        v, n_lo, size = self.grid.values, self.grid.n_lo, self.grid.size
        idx = np.arange(size)
        best: tuple[float, tuple[int, int, int, int]] | None = None
        for i, (cost, miss, fb) in enumerate(self._surfaces):
            ok = (idx >= i)[:, None, None] & (idx[None, :] >= np.arange(n_lo)[:, None])[None]
            ok &= miss <= alpha
            if beta is not None:
                ok &= fb <= beta
            if ok.any():
                flat = int(np.argmin(np.where(ok, cost, np.inf)))
                if best is None or cost.flat[flat] < best[0]:
                    jj, kk, mm = np.unravel_index(flat, cost.shape)
                    best = (float(cost.flat[flat]), (i, int(jj), int(kk), int(mm)))
        assert best is not None  # allowing nothing always meets any alpha
        a, b, c, d = best[1]
        ts = ThresholdSet(float(v[a]), float(v[b]), float(v[c]), float(v[d]))
        return ts, self.of(ts)

    def cost_at_budget(self, alpha: float, shares: FloatArray) -> FloatArray:
        """Optimal cost when only ``share × alpha`` of the miss budget may be used, over the
        optimum's cost: how much a conservative certificate must pay."""
        full = self.optimum(alpha)[1].cost
        return np.array([self.optimum(alpha * s)[1].cost / full for s in shares])

    def median_limit(self, n: int, alpha: float, level: float) -> float:
        """The yardstick of what ``n`` labels allow: the cost (over the optimum's) of the
        cheapest set that one exact binomial test at ``level`` — no multiplicity, no split,
        the set picked knowing the truth — certifies in at least half of the draws. A
        procedure that must also find the set from the data cannot expect a lower median."""
        n_test = size_of_test_part(n, alpha, level)
        c = critical_count(n_test, alpha, level)
        risk = miss_envelope(self.harmful, self.grid.n_lo)
        power = stats.binom.cdf(c, n_test, np.clip(risk, 0.0, 1.0)) if c >= 0 else 0.0 * risk
        power[0, 0] = 1.0  # allowing nothing needs no test
        cost = cost_per_allow_pair(self.tables, self.costs, self.grid.n_lo)
        return float(np.where(power >= 0.5, cost, np.inf).min() / self.optimum(alpha)[1].cost)
