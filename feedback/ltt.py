"""Learn-then-Test with one fixed sequence: the multiple testing behind the certificate.

**The design** (Angelopoulos et al. 2021, "Learn then Test", their split recipe):

1. *Learn*: on an **ordering** sample ``D1`` — a random part of the audit sample, or a previous
   audit window that shares no image with this one — build one sequence of candidate pairs
   ``h_1, h_2, …`` from safest to cheapest: the cost/risk frontier of ``D1`` (for each level of
   estimated risk, the cheapest pair that reaches it), ending at the pair ``D1`` finds cheapest
   overall. Estimated risk is smoothed by a logistic model of ``P(harmful | scores)`` fitted on
   ``D1``: it only orders the sequence, so a wrong model costs money, never validity.
2. *Test*: on the **testing** sample ``D2`` (the rest), walk the sequence with exact binomial
   p-values of H0 "risk of h_t > alpha" at the full level ``ℓ``, and stop at the first p-value
   above ``ℓ``. Certified: the pairs before the stop.

The multiplicity is 1 — it does not grow with the grid, so the grid can be fine.

**Validity.** Claim: ``P(some certified pair has true risk > alpha) <= ℓ`` over the draw of the
audit sample and the split. Proof: (a) the split is made by a seeded generator that never sees
the data, and audit images are drawn independently of one another, so ``D1`` and ``D2`` are
independent and, given its size ``n2``, ``D2`` (thinned to one common inclusion probability,
:func:`feedback.sample.equal_probability_subsample`) is ``n2`` i.i.d. draws from the traffic.
(b) The sequence is a function of ``D1`` alone, so given ``D1`` it is fixed, and for each ``h``
the count of risky images in ``D2`` is ``K_h ~ Binomial(n2, R_h)`` with ``R_h`` its true risk.
(c) If ``R_h > alpha``, ``P(p_h <= ℓ) = P(Binomial(n2, R_h) <= c) <= P(Binomial(n2, alpha) <=
c) <= ℓ`` where ``c`` is the largest count with ``p <= ℓ`` (the binomial CDF falls as the rate
rises). (d) Let ``t*`` be the first position with ``R > alpha``. Because testing stops at the
first failure, any false certificate requires ``h_{t*}`` itself to pass: probability ``<= ℓ``
given ``D1``, hence unconditionally. ∎ Any rule may then pick among the certified pairs (the
cheapest, on all the data): all of them hold at once.

**Two risks** (misses and, optionally, false blocks): the miss envelope depends only on the
allow pair, the false-block envelope only on the block pair (:mod:`feedback.tables`), so each
gets its own sequence at its own level with ``ℓ_miss + ℓ_false_block = delta``: by the union
bound both certificates hold together with probability at least ``1 - delta``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from feedback.bound import miss_pvalues
from feedback.risk import size_of_test_part
from feedback.sample import AuditSample, FloatArray, equal_probability_mask
from feedback.tables import BoolArray, IntArray

Pair = tuple[int, int]


def split(
    sample: AuditSample,
    *,
    limit: float,
    level: float,
    order_share: float,
    previous: AuditSample | None = None,
    seed: int = 0,
) -> tuple[AuditSample, AuditSample]:
    """``(ordering, testing)`` parts of the audit sample.

    The testing part is a uniformly random subset, drawn by a generator that never sees the
    data, of the equal-probability thinning of ``sample``; its size depends only on the sample
    size, ``limit`` and ``level`` (:func:`feedback.risk.size_of_test_part` of the room left after
    ``order_share``, or of all of it when a ``previous`` window orders). Every other image
    (and the previous window) orders.
    """
    if not 0.0 < order_share < 1.0:
        raise ValueError(f"order_share={order_share} must lie in (0, 1)")
    kept = np.flatnonzero(equal_probability_mask(sample, seed))
    kept = np.random.default_rng([seed, 0x1E7]).permutation(kept)
    room = len(kept) if previous is not None else int(len(kept) * (1.0 - order_share))
    chosen = kept[: size_of_test_part(room, limit, level)]
    testing = np.zeros(sample.n, dtype=bool)
    testing[chosen] = True
    order = sample.subset(~testing)
    if previous is not None:
        order = previous.joined(order)
    test = sample.subset(testing)
    common = np.full(test.n, sample.p.min() if sample.n else 1.0)
    return order, AuditSample(test.s1, test.s2, test.label, common)


def _features(sample: AuditSample) -> FloatArray:
    clipped = [np.clip(s, 1e-6, 1 - 1e-6) for s in (sample.s1, sample.s2)]
    return np.column_stack([np.ones(sample.n)] + [np.log(s / (1 - s)) for s in clipped])


def harm_probability(sample: AuditSample, ridge: float = 1e-3) -> FloatArray:
    """``P(harmful | s1, s2)`` for each image of ``sample``, by a weighted logistic regression
    on the two logits fitted on the same sample (Newton steps with a small ridge, so that a
    sample without one of the classes still gives finite answers)."""
    x, y, w = _features(sample), sample.label, sample.weights / sample.weights.mean()
    beta = np.zeros(x.shape[1])
    for _ in range(50):
        q = 1.0 / (1.0 + np.exp(-np.clip(x @ beta, -30, 30)))
        grad = x.T @ (w * (y - q)) - ridge * beta
        hess = (x * (w * q * (1 - q))[:, None]).T @ x + ridge * np.eye(x.shape[1])
        step = np.linalg.solve(hess, grad)
        beta += step
        if np.max(np.abs(step)) < 1e-8:
            break
    return 1.0 / (1.0 + np.exp(-np.clip(x @ beta, -30, 30)))


def frontier(cost: FloatArray, risk: FloatArray, price: float) -> list[Pair]:
    """The sequence to test: pairs in order of rising estimated ``risk``, each strictly cheaper
    (by ``cost``, which excludes the priced risk) than every pair before it, ending at the pair
    that minimises ``cost + price·risk`` — pairs after it are dearer even with their risk free.
    """
    finite = np.isfinite(cost)
    order = np.lexsort((cost[finite], risk[finite]))
    idx = np.argwhere(finite)[order]
    path: list[Pair] = []
    best = np.inf
    for a, b in idx:
        if cost[a, b] < best - 1e-15:
            path.append((int(a), int(b)))
            best = cost[a, b]
    if not path:
        return path
    totals = [cost[p] + price * risk[p] for p in path]
    return path[: int(np.argmin(totals)) + 1]


@dataclass(frozen=True, eq=False)
class SequenceTest:
    """The outcome of testing one sequence: pairs, their counts and p-values, how many passed."""

    path: list[Pair]
    counts: IntArray
    pvalues: FloatArray
    n: int
    limit: float
    level: float
    passed: int

    @property
    def certified(self) -> list[Pair]:
        return self.path[: self.passed]

    def mask(self, shape: tuple[int, int]) -> BoolArray:
        out = np.zeros(shape, dtype=bool)
        for pair in self.certified:
            out[pair] = True
        return out

    def count_of(self, pair: Pair) -> int:
        return int(self.counts[self.path.index(pair)])


def certify_sequence(
    path: list[Pair], envelope: npt.ArrayLike, n: int, limit: float, level: float
) -> SequenceTest:
    """Fixed-sequence test along ``path`` of H0 "rate > limit" with the exact binomial p-value
    of each pair's count in ``envelope`` (counts over ``n`` i.i.d. images)."""
    env = np.asarray(envelope)
    counts = np.array([round(float(env[p])) for p in path], dtype=np.int64)
    pvalues = miss_pvalues(counts, n, limit) if n > 0 else np.ones(len(path))
    passed = int(np.logical_and.accumulate(pvalues <= level).sum()) if len(path) else 0
    return SequenceTest(path, counts, pvalues, n, limit, level, passed)
