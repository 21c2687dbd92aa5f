"""The one-standard-error rule (``CASCADE_TIE_BREAK_SE``, off by default): among the certified
sets the audit sample cannot tell apart from the cheapest, the one that sends the fewest images
to stage 2.

Why one might want it: compute is nearly free in the cost (millionths of a dollar an image,
against $0.05 a review and dollars a miss), so the cheapest set may send many images to stage 2
to save a handful of reviews; an operator whose stage-2 pool is the constraint may prefer a
leaner set that costs no more within the sample's noise. Breiman et al.'s rule (*Classification
and Regression Trees*, 1984; Hastie et al., *Elements of Statistical Learning* §7.10) takes the
simplest model whose estimated error is within one standard error of the best; here the simplest
set is the one with the fewest images to stage 2. Ties go to the lower estimated cost.

What it does (`cascade bench cascade`, world 9, 50 splits): little. Sets that send fewer images
to stage 2 review or block more of them, and paired on the same images that difference is
rarely within one standard error; stage 1's mean share rose from 0.745 to 0.761 with misses left
to the bound, at 2 % more total cost. The tuned point's jumps between splits come from which
allow pairs the certificate covers, not from near-ties in cost. Hence off by default.

The standard error is that of the cost *difference* to the cheapest set, paired on the same audit
images: two sets that route most images alike differ by little noise, so this is much stricter
than the standard error of one set's cost. It is the linearised variance of the weighted mean,
``Σ w²·(d - d̄)² / (Σ w)²``, where ``d`` is an image's difference in review, miss and false-block
dollars. Unlike :func:`feedback.estimate.weighted_mean` it has no finite-population factor
``1 - p``: the question is what the sets will cost on traffic still to come, of which the audit
sample is one draw, not what they cost on the window it was drawn from (with every image audited,
``p = 1``, that variance would be zero). Compute dollars are left out of ``d``: they follow from
the route alone and are a million times smaller.

Only certified sets are candidates, so the rule never touches the miss-rate guarantee: it picks
among sets the certificate already covers.
"""

from __future__ import annotations

import numpy as np

from cascade.policy import ThresholdSet
from feedback.costs import StageCosts
from feedback.estimate import per_image
from feedback.sample import AuditSample, FloatArray
from feedback.tables import BoolArray, CellTables, ThresholdGrid, feasible, surfaces

__all__ = ["PairedError", "leanest_within"]

Candidate = tuple[int, int, int, int]


def _errors_only(costs: StageCosts, power: int = 1) -> StageCosts:
    """The dollars an image's route and label decide (compute left out), raised to ``power``:
    the routes are exclusive, so the square of an image's dollars is the sum of squared prices."""
    return StageCosts(stage1=0.0, stage2=0.0, human=costs.human**power, miss=costs.miss**power,
                      false_block=costs.false_block**power)  # fmt: skip


class PairedError:
    """Standard errors of the cost difference between every candidate and one ``base`` set,
    paired on the audit images, one ``t1_lo`` index at a time (the shape of
    :func:`feedback.tables.surfaces`)."""

    def __init__(
        self, sample: AuditSample, grid: ThresholdGrid, costs: StageCosts, base: Candidate
    ) -> None:
        v, w = grid.values, sample.weights
        total = float(w.sum())
        ts = ThresholdSet(
            float(v[base[0]]), float(v[base[1]]), float(v[base[2]]), float(v[base[3]])
        )
        dollars = per_image(sample, ts, _errors_only(costs))["cost"]
        var_w = (w / total) ** 2
        self._n_lo = grid.n_lo
        self._linear, self._square = _errors_only(costs), _errors_only(costs, 2)
        self._plain = CellTables.from_cells(*grid.cells(sample, w / total))
        self._spread = CellTables.from_cells(*grid.cells(sample, var_w))
        self._cross = CellTables.from_cells(*grid.cells(sample, var_w * dollars))
        self._mean = float(np.sum(w * dollars) / total)
        self._sums = tuple(float(np.sum(var_w * dollars**k)) for k in (0, 1, 2))

    def at(self, i: int) -> tuple[FloatArray, FloatArray]:
        """``out[j, k, m]`` for the candidates ``(i, j, k, m)``: the difference in their
        estimated review, miss and false-block dollars per image, and its standard error."""
        n_lo, linear = self._n_lo, self._linear
        var_sum, base_lin, base_sq = self._sums
        mean = surfaces(self._plain, i, linear, n_lo)[0] - self._mean
        sum_d = surfaces(self._spread, i, linear, n_lo)[0] - base_lin
        sum_d2 = (
            surfaces(self._spread, i, self._square, n_lo)[0]
            - 2.0 * surfaces(self._cross, i, linear, n_lo)[0]
            + base_sq
        )
        var = sum_d2 - 2.0 * mean * sum_d + mean**2 * var_sum
        return mean, np.sqrt(np.maximum(var, 0.0))


def leanest_within(
    sample: AuditSample,
    grid: ThresholdGrid,
    criterion: CellTables,
    costs: StageCosts,
    cheapest: Candidate,
    mask: tuple[BoolArray, BoolArray | None],
    review_limit: float | None,
    se: float = 1.0,
) -> Candidate:
    """Grid indices of the set with the fewest images to stage 2 among the candidates whose
    cost exceeds the ``cheapest`` one's by at most ``se`` standard errors of the paired
    difference (:class:`PairedError`), by the ``criterion`` the cheapest was found with and by
    the audit labels themselves; ties go to the lower ``criterion`` cost.
    ``mask`` is ``(allowed, blockable)`` as for :func:`feedback.tables.search`."""
    allowed, blockable = mask
    n_lo, size = grid.n_lo, grid.size
    paired = PairedError(sample, grid, costs, cheapest)
    i0, j0, k0, m0 = cheapest
    floor = float(surfaces(criterion, i0, costs, n_lo)[0][j0, k0, m0])
    reach = criterion.one[:size, size]  # weight with s1 below each grid value
    best: tuple[float, float, Candidate] | None = None
    for i in map(int, np.flatnonzero(allowed.any(axis=1))):
        cost, ok = feasible(criterion, i, costs, n_lo, review_limit, allowed, blockable)
        if not ok.any():
            continue
        diff, err = paired.at(i)
        ok &= (cost - floor <= se * err + 1e-15) & (diff <= se * err + 1e-15)
        if not ok.any():
            continue
        to_stage2 = np.broadcast_to((reach - reach[i])[:, None, None], cost.shape)
        lowest = float(np.where(ok, to_stage2, np.inf).min())
        pick = np.where(ok & (to_stage2 <= lowest + 1e-15), cost, np.inf)
        flat = int(np.argmin(pick))
        j, k, m = (int(x) for x in np.unravel_index(flat, cost.shape))
        found = (lowest, float(cost.flat[flat]), (i, j, k, m))
        if best is None or found[:2] < best[:2]:
            best = found
    return cheapest if best is None else best[2]
