"""Every candidate threshold set at once: the grid, weighted prefix tables, exact cost search.

A candidate is four grid indices ``(i, j, k, m)`` for ``(t1_lo, t1_hi, t2_lo, t2_hi)``. Binning
the audit sample (or a world's exact cell probabilities) into ``(s1 cell, s2 cell)`` once turns
the cost and error rates of *every* candidate into differences of prefix sums, so the cheapest
candidate under any mask of allowed index pairs is an exact, vectorised search — the same
numbers :func:`feedback.estimate.estimate` computes one set at a time.

Envelopes (what makes the certificate independent of half of the thresholds):

- **misses** of a set depend on its allow pair ``(i, k)`` only through the harmful images with
  ``s1 < values[i]`` or ``s2 < values[k]``: no set with that allow pair allows any other harmful
  image, whatever its block thresholds (those only take images away from "allow");
- **false blocks** of a set depend on its block pair ``(j, m)`` only through the benign images
  with ``s1 >= values[j]`` or ``s2 >= values[m]``, whatever its allow thresholds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from feedback.costs import StageCosts
from feedback.sample import AuditSample, FloatArray

BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, eq=False)
class ThresholdGrid:
    """Sorted candidate threshold values (0 and 1 included), shared by both stages."""

    values: FloatArray
    max_allow: float = 0.5

    @classmethod
    def default(cls, per_side: int = 32, max_allow: float = 0.5) -> ThresholdGrid:
        """Geometrically fine near 0 and 1, where thresholds of a good screener live. The
        multiple testing does not pay for a finer grid (see :mod:`feedback.ltt`)."""
        tail = np.geomspace(1e-3, 0.5, per_side)
        return cls(np.unique(np.concatenate([[0.0], tail, 1.0 - tail, [1.0]])), max_allow)

    def __post_init__(self) -> None:
        v = self.values
        if v[0] != 0.0 or v[-1] != 1.0 or np.any(np.diff(v) <= 0):
            raise ValueError("grid values must increase strictly from 0.0 to 1.0")

    @property
    def size(self) -> int:
        return len(self.values)

    @property
    def n_lo(self) -> int:
        """Allow thresholds are the first ``n_lo`` values."""
        return int(np.searchsorted(self.values, self.max_allow, side="right"))

    def bins(self, scores: FloatArray) -> npt.NDArray[np.intp]:
        """Cell of each score: ``values[c] <= s < values[c+1]``, so ``s < values[t]`` iff ``c < t``."""
        cells = np.searchsorted(self.values, scores, side="right") - 1
        return np.clip(cells, 0, len(self.values) - 1)

    def mass(self, sample: AuditSample, weights: FloatArray) -> FloatArray:
        """Sum of ``weights`` per ``(s1 cell, s2 cell)``."""
        m = np.zeros((self.size, self.size))
        np.add.at(m, (self.bins(sample.s1), self.bins(sample.s2)), weights)
        return m

    def cells(self, sample: AuditSample, weights: FloatArray) -> tuple[FloatArray, FloatArray]:
        """``(benign, harmful)`` sums of ``weights`` per ``(s1 cell, s2 cell)``."""
        harmful = sample.label == 1
        return (
            self.mass(sample, np.where(harmful, 0.0, weights)),
            self.mass(sample, np.where(harmful, weights, 0.0)),
        )


def miss_envelope(harmful: FloatArray, n_lo: int) -> FloatArray:
    """``out[i, k]``: harmful mass with ``s1 < values[i]`` or ``s2 < values[k]``."""
    suffix = harmful[::-1, ::-1].cumsum(0).cumsum(1)[::-1, ::-1]  # s1 >= v[i] and s2 >= v[k]
    return harmful.sum() - suffix[:n_lo, :n_lo]


def false_block_envelope(benign: FloatArray) -> FloatArray:
    """``out[j, m]``: benign mass with ``s1 >= values[j]`` or ``s2 >= values[m]``."""
    size = benign.shape[0]
    prefix = np.zeros((size + 1, size + 1))
    prefix[1:, 1:] = benign.cumsum(0).cumsum(1)  # s1 < v[j] and s2 < v[m]
    return benign.sum() - prefix[:size, :size]


@dataclass(frozen=True, eq=False)
class CellTables:
    """Normalised weight sums as prefix tables: ``y[a, k] = Σ w·label`` over images with s1-cell
    < a and s2-cell < k (``n`` for label 0, ``one`` for all); index ``size`` means every score."""

    y: FloatArray
    n: FloatArray
    one: FloatArray

    @classmethod
    def from_cells(cls, benign: FloatArray, harmful: FloatArray) -> CellTables:
        """From per-cell masses that are already shares of all traffic (a world's exact law)."""

        def prefix(m: FloatArray) -> FloatArray:
            out = np.zeros((m.shape[0] + 1, m.shape[1] + 1))
            out[1:, 1:] = m.cumsum(0).cumsum(1)
            return out

        return cls(prefix(harmful), prefix(benign), prefix(benign + harmful))

    @classmethod
    def from_sample(cls, sample: AuditSample, grid: ThresholdGrid) -> CellTables:
        """Horvitz–Thompson weights over the population size when known, else Hájek."""
        total = float(sample.population) if sample.population else float(sample.weights.sum())
        benign, harmful = grid.cells(sample, sample.weights / total)
        return cls.from_cells(benign, harmful)

    @property
    def size(self) -> int:
        return self.y.shape[0] - 1


def surfaces(t: CellTables, i: int, costs: StageCosts, n_lo: int) -> tuple[FloatArray, FloatArray]:
    """Cost and human share over ``(t1_hi, t2_lo, t2_hi)`` indices for ``t1_lo`` index ``i``."""
    size = t.size
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


def feasible(
    t: CellTables, i: int, costs: StageCosts, n_lo: int, review_limit: float | None,
    allowed: BoolArray | None = None, blockable: BoolArray | None = None,
) -> tuple[FloatArray, BoolArray]:  # fmt: skip
    """Cost surface for ``t1_lo`` index ``i`` and which ``(j, k, m)`` are valid candidates:
    ``t1_hi >= t1_lo``, ``t2_hi >= t2_lo``, the human share within the limit, and the allow
    pair ``(i, k)`` ``allowed`` and block pair ``(j, m)`` ``blockable`` (all when None)."""
    size = t.size
    idx = np.arange(size)
    cost, review = surfaces(t, i, costs, n_lo)
    ok = (idx >= i)[:, None, None] & (idx[None, :] >= np.arange(n_lo)[:, None])[None]
    if review_limit is not None:
        ok = ok & (review <= review_limit + 1e-12)
    if allowed is not None:
        ok = ok & allowed[i][None, :, None]
    if blockable is not None:
        ok = ok & blockable[:, None, :]
    return cost, ok


def search(
    t: CellTables,
    costs: StageCosts,
    n_lo: int,
    allowed: BoolArray,
    review_limit: float | None = None,
    blockable: BoolArray | None = None,
) -> tuple[int, int, int, int] | None:
    """Indices ``(i, j, k, m)`` of the cheapest candidate whose allow pair ``(i, k)`` is
    ``allowed`` and block pair ``(j, m)`` is ``blockable`` (all when None), within the review
    limit; None when there is none."""
    best: tuple[float, tuple[int, int, int, int]] | None = None
    for i in np.flatnonzero(allowed.any(axis=1)):
        cost, ok = feasible(t, int(i), costs, n_lo, review_limit, allowed, blockable)
        if ok.any():
            flat = int(np.argmin(np.where(ok, cost, np.inf)))
            if best is None or cost.flat[flat] < best[0]:
                j, k, m = np.unravel_index(flat, cost.shape)
                best = (float(cost.flat[flat]), (int(i), int(j), int(k), int(m)))
    return None if best is None else best[1]


def cost_per_allow_pair(
    t: CellTables,
    costs: StageCosts,
    n_lo: int,
    review_limit: float | None = None,
    blockable: BoolArray | None = None,
) -> FloatArray:
    """``out[i, k]``: the lowest cost of any candidate with allow pair ``(i, k)`` and a
    ``blockable`` block pair (inf when none fits the review limit)."""
    out = np.full((n_lo, n_lo), np.inf)
    for i in range(n_lo):
        cost, ok = feasible(t, i, costs, n_lo, review_limit, blockable=blockable)
        out[i] = np.where(ok, cost, np.inf).min(axis=(0, 2))
    return out


def cost_per_block_pair(
    t: CellTables,
    costs: StageCosts,
    n_lo: int,
    allowed: BoolArray,
    review_limit: float | None = None,
) -> FloatArray:
    """``out[j, m]``: the lowest cost of any candidate with block pair ``(j, m)`` whose allow
    pair is ``allowed`` (inf when none)."""
    out = np.full((t.size, t.size), np.inf)
    for i in np.flatnonzero(allowed.any(axis=1)):
        cost, ok = feasible(t, int(i), costs, n_lo, review_limit, allowed)
        out = np.minimum(out, np.where(ok, cost, np.inf).min(axis=1))
    return out
