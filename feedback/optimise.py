"""Learn-then-Test: the cheapest threshold set whose miss rate is certified to be <= alpha.

The guarantee (Angelopoulos et al. 2021, "Learn then Test"): with probability at least
``1 - delta`` over the draw of the audit sample, *every* set the procedure certifies has a true
miss rate <= alpha — so the cheapest of them does too, however it was picked.

How, concretely:

1. **Candidates** come from a fixed grid of values (chosen before seeing data), with
   ``t_lo <= t_hi`` at both stages and allow thresholds only up to ``max_allow`` (0.5: the cascade
   never allows automatically what a stage thinks more likely harmful than not).
2. **Which misses a set can make** depends only on the allow thresholds: an image is allowed at
   stage 1 when ``s1 < t1_lo``, and *at most* those with ``s2 < t2_lo`` among the rest are allowed
   at stage 2 (the block thresholds can only take images away from "allow"). We test this
   envelope for each pair ``(t1_lo, t2_lo)``, so a certificate holds for every choice of
   ``t1_hi, t2_hi`` — those are then free to minimise cost.
3. **p-values**: exact binomial tail of the envelope miss count for H0 "miss rate >= alpha", on
   the equal-probability thinning of the sample (:func:`feedback.sample.equal_probability_subsample`).
4. **Family-wise error**: one path per ``t2_lo`` value, ordered by ``t1_lo`` from 0 (safest) up
   (cheapest: stage 1 settles more). Fixed-sequence testing along each path, stopping at the
   first p-value above the level, Bonferroni across the paths (level ``delta / #paths``). Each
   path errs with probability <= delta/#paths, so some path errs with probability <= delta.
5. **Cost** (expected $/image, see :mod:`feedback.estimate`) is minimised over every certified
   pair and every block-threshold pair, optionally under a cap on human reviews per hour (a
   point-estimate constraint: the statistical guarantee is on misses only). The cap can always
   be met: ``t2_lo = t2_hi`` sends nobody to a human (at the price of more false blocks).

Nothing certifiable → :data:`FALLBACK`, flagged; never a guess.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats

from cascade.policy import DEFAULT_THRESHOLDS, ThresholdSet
from feedback.bound import miss_pvalues
from feedback.costs import StageCosts
from feedback.estimate import Estimate, estimate
from feedback.sample import AuditSample, FloatArray, equal_probability_subsample

# Allows nothing automatically (no score is below 0), so its miss rate is zero by construction;
# blocks keep the hand-set defaults; everything else goes to a human.
FALLBACK = ThresholdSet(
    t1_lo=0.0, t1_hi=DEFAULT_THRESHOLDS.t1_hi, t2_lo=0.0, t2_hi=DEFAULT_THRESHOLDS.t2_hi
)


@dataclass(frozen=True, eq=False)
class ThresholdGrid:
    """Sorted candidate threshold values (0 and 1 included), shared by both stages."""

    values: FloatArray
    max_allow: float = 0.5

    @classmethod
    def default(cls, per_side: int = 16, max_allow: float = 0.5) -> ThresholdGrid:
        """Geometrically fine near 0 and 1, where thresholds of a good screener live."""
        tail = np.geomspace(1e-3, 0.5, per_side)
        return cls(np.unique(np.concatenate([[0.0], tail, 1.0 - tail, [1.0]])), max_allow)

    def __post_init__(self) -> None:
        v = self.values
        if v[0] != 0.0 or v[-1] != 1.0 or np.any(np.diff(v) <= 0):
            raise ValueError("grid values must increase strictly from 0.0 to 1.0")

    @property
    def n_lo(self) -> int:
        """Allow thresholds are the first ``n_lo`` values."""
        return int(np.searchsorted(self.values, self.max_allow, side="right"))

    def bins(self, scores: FloatArray) -> npt.NDArray[np.intp]:
        """Cell of each score: ``values[c] <= s < values[c+1]``, so ``s < values[t]`` iff ``c < t``."""
        cells = np.searchsorted(self.values, scores, side="right") - 1
        return np.clip(cells, 0, len(self.values) - 1)


@dataclass(frozen=True, eq=False)
class Certification:
    """Which ``(t1_lo, t2_lo)`` index pairs are certified, and their miss-rate bounds."""

    certified: npt.NDArray[np.bool_]
    bound: FloatArray
    level: float
    n: int


def certify(
    sample: AuditSample, grid: ThresholdGrid, alpha: float, delta: float, seed: int = 0
) -> Certification:
    """Fixed-sequence tests along ``t1_lo`` per ``t2_lo`` path, Bonferroni across paths."""
    thin = equal_probability_subsample(sample, seed)
    n, n_lo, size = thin.n, grid.n_lo, len(grid.values)
    harmful = thin.label == 1
    counts = np.zeros((size, size))
    np.add.at(counts, (grid.bins(thin.s1[harmful]), grid.bins(thin.s2[harmful])), 1.0)
    # suffix[i, k]: harmful images with s1 >= values[i] and s2 >= values[k]: never allowed.
    suffix = counts[::-1, ::-1].cumsum(0).cumsum(1)[::-1, ::-1]
    envelope = np.rint(harmful.sum() - suffix[:n_lo, :n_lo]).astype(np.int64)
    level = delta / n_lo
    passed = miss_pvalues(envelope, n, alpha) <= level
    certified = np.logical_and.accumulate(passed, axis=0)
    bound = np.where(
        envelope < n, stats.beta.ppf(1.0 - level, envelope + 1, np.maximum(n - envelope, 1)), 1.0
    )
    return Certification(certified & (n > 0), np.asarray(bound, dtype=np.float64), level, n)


@dataclass(frozen=True)
class Optimum:
    """The chosen set, what it is expected to do, and how much to trust that."""

    thresholds: ThresholdSet
    estimate: Estimate | None
    miss_rate_bound: float
    certified: bool
    fallback: bool
    alpha: float
    delta: float
    level: float
    n_samples: int
    n_bound_samples: int
    n_certified: int
    note: str


@dataclass(frozen=True, eq=False)
class _Tables:
    """Normalised weight sums as prefix tables: ``y[a, k] = Σ w·label`` over images with s1-cell
    < a and s2-cell < k (``n`` for label 0, ``one`` for all); column ``K`` means every s2."""

    y: FloatArray
    n: FloatArray
    one: FloatArray


def _tables(sample: AuditSample, grid: ThresholdGrid) -> _Tables:
    size = len(grid.values)
    cells = (grid.bins(sample.s1), grid.bins(sample.s2))
    total = float(sample.population) if sample.population else float(sample.weights.sum())
    w = sample.weights / total

    def prefix(values: FloatArray) -> FloatArray:
        m = np.zeros((size, size))
        np.add.at(m, cells, values)
        out = np.zeros((size + 1, size + 1))
        out[1:, 1:] = m.cumsum(0).cumsum(1)
        return out

    return _Tables(prefix(w * sample.label), prefix(w * (1 - sample.label)), prefix(w))


def _surfaces(t: _Tables, i: int, costs: StageCosts, n_lo: int) -> tuple[FloatArray, FloatArray]:
    """Cost and human share over ``(t1_hi, t2_lo, t2_hi)`` indices for ``t1_lo`` index ``i``."""
    size = t.y.shape[0] - 1
    ry, rn, r1 = t.y[:size, size], t.n[:size, size], t.one[:size, size]  # s1-cell < a, any s2
    low = costs.miss * t.y[:size, :n_lo] - costs.human * t.one[:size, :n_lo]
    high = costs.false_block * (rn[:, None] - t.n[:size, :size]) - costs.human * (
        r1[:, None] - t.one[:size, :size]
    )
    band = r1 - r1[i]  # weight with values[i] <= s1 < values[j]
    cost = (
        costs.stage1 * t.one[size, size]
        + costs.miss * ry[i]
        + (costs.false_block * (t.n[size, size] - rn) + (costs.stage2 + costs.human) * band)[
            :, None, None
        ]
        + (low - low[i])[:, :, None]
        + (high - high[i])[:, None, :]
    )
    band_low = t.one[:size, :n_lo] - t.one[i, :n_lo]
    band_high = (r1[:, None] - t.one[:size, :size]) - (r1[i] - t.one[i, :size])
    review = band[:, None, None] - band_low[:, :, None] - band_high[:, None, :]
    return cost, review


def _search(
    t: _Tables,
    grid: ThresholdGrid,
    costs: StageCosts,
    allowed: npt.NDArray[np.bool_],
    review_limit: float | None,
) -> tuple[int, int, int, int]:
    """Cheapest allowed candidate under the review limit. One always exists: ``t_lo = t_hi``
    at stage 2 sends nobody to a human."""
    size, n_lo = len(grid.values), grid.n_lo
    idx = np.arange(size)
    ordered = idx[None, :] >= np.arange(n_lo)[:, None]  # t2_hi >= t2_lo
    best: tuple[float, tuple[int, int, int, int]] | None = None
    for i in np.flatnonzero(allowed.any(axis=1)):
        cost, review = _surfaces(t, int(i), costs, n_lo)
        ok = (idx >= i)[:, None, None] & ordered[None] & allowed[i][None, :, None]
        if review_limit is not None:
            ok &= review <= review_limit + 1e-12
        if ok.any():
            flat = int(np.argmin(np.where(ok, cost, np.inf)))
            if best is None or cost.flat[flat] < best[0]:
                best = (float(cost.flat[flat]), _as_ints((i, *np.unravel_index(flat, cost.shape))))
    if best is None:
        raise ValueError("no allowed candidate: pass at least one allowed (t1_lo, t2_lo) pair")
    return best[1]


def cheapest(
    sample: AuditSample,
    grid: ThresholdGrid,
    costs: StageCosts,
    allowed: npt.NDArray[np.bool_],
    review_limit: float | None = None,
) -> tuple[int, int, int, int]:
    """Grid indices ``(t1_lo, t1_hi, t2_lo, t2_hi)`` of the cheapest set whose allow pair is
    ``allowed`` and whose human share is <= ``review_limit``. Exact: the same weighted sums
    :func:`feedback.estimate.estimate` computes, for every candidate at once."""
    return _search(_tables(sample, grid), grid, costs, allowed, review_limit)


def _as_ints(index: tuple[object, ...]) -> tuple[int, int, int, int]:
    a, b, c, d = (int(x) for x in index)  # type: ignore[call-overload]
    return a, b, c, d


def optimise(
    sample: AuditSample,
    costs: StageCosts,
    *,
    alpha: float,
    delta: float,
    grid: ThresholdGrid | None = None,
    traffic_per_hour: float | None = None,
    max_reviews_per_hour: float | None = None,
    ceiling: ThresholdSet | None = None,
    seed: int = 0,
) -> Optimum:
    """The cheapest certified threshold set (see the module docstring for the procedure).

    ``ceiling`` limits the allow thresholds (``t1_lo, t2_lo`` no higher than its own): a retune
    triggered by appeals or reports may only tighten what is allowed automatically.
    """
    grid = grid or ThresholdGrid.default()
    if sample.n == 0:
        return _fallback(sample, costs, alpha, delta, None, "no labelled audit images yet")
    cert = certify(sample, grid, alpha, delta, seed)
    allowed = cert.certified.copy()
    if ceiling is not None:
        lo = grid.values[: grid.n_lo]
        allowed &= (lo <= ceiling.t1_lo)[:, None] & (lo <= ceiling.t2_lo)[None, :]
    if not allowed.any():
        need = int(np.ceil(np.log(cert.level) / np.log1p(-alpha)))
        note = (
            f"nothing certified: {cert.n} equal-probability audit images; even with no misses "
            f"at least {need} are needed for alpha={alpha}, delta={delta}"
        )
        return _fallback(sample, costs, alpha, delta, cert, note)
    limit = None
    if max_reviews_per_hour is not None and traffic_per_hour:
        limit = max_reviews_per_hour / traffic_per_hour
    i, j, k, m = cheapest(sample, grid, costs, allowed, limit)
    v = grid.values
    ts = ThresholdSet(float(v[i]), float(v[j]), float(v[k]), float(v[m]))
    note = "certified" if limit is None else f"certified; at most {limit:.4g} of images to humans"
    return Optimum(
        thresholds=ts,
        estimate=estimate(sample, ts, costs),
        miss_rate_bound=float(cert.bound[i, k]),
        certified=True,
        fallback=False,
        alpha=alpha,
        delta=delta,
        level=cert.level,
        n_samples=sample.n,
        n_bound_samples=cert.n,
        n_certified=int(allowed.sum()),
        note=note,
    )


def _fallback(
    sample: AuditSample,
    costs: StageCosts,
    alpha: float,
    delta: float,
    cert: Certification | None,
    note: str,
) -> Optimum:
    return Optimum(
        thresholds=FALLBACK,
        estimate=estimate(sample, FALLBACK, costs) if sample.n else None,
        miss_rate_bound=0.0,  # allows nothing automatically: no misses by construction
        certified=False,
        fallback=True,
        alpha=alpha,
        delta=delta,
        level=cert.level if cert else delta,
        n_samples=sample.n,
        n_bound_samples=cert.n if cert else 0,
        n_certified=0,
        note=note,
    )
