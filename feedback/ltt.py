"""Learn-then-Test with one fixed sequence: the multiple testing behind the certificate.

**The design** (Angelopoulos et al. 2021, "Learn then Test", their split recipe):

1. *Learn*: on an **ordering** sample ``D1`` — a random part of the audit sample, or a previous
   audit window that shares no image with this one — build one sequence of candidate pairs
   ``h_1, h_2, …`` from safest to cheapest: the cost/risk frontier of ``D1`` (for each level of
   estimated risk, the cheapest pair that reaches it), down to the cheapest pair of all,
   whatever its risk: the test stops where risk gets too high, and pairs at the end cost the
   test nothing. Estimated risk is smoothed by a model of ``P(harmful | scores)`` fitted on ``D1``
   (:func:`harm_probability`, additive in the two logits): it only orders the sequence, so a
   wrong model costs money, never validity.
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
from scipy.interpolate import BSpline

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


SPLINE_BASES = 20  # cubic B-splines per logit, equally spaced over the sample's range
SMOOTHING = (1e4, 100.0, 1.0)  # roughness penalties tried, stiffest first


def _logits(sample: AuditSample) -> list[FloatArray]:
    clipped = [np.clip(s, 1e-6, 1 - 1e-6) for s in (sample.s1, sample.s2)]
    return [np.log(s / (1 - s)) for s in clipped]


def _spline_basis(x: FloatArray, bases: int) -> FloatArray:
    """Equally spaced cubic B-splines spanning ``[min x, max x]``: ``(len(x), bases)``."""
    lo, hi = float(x.min()), float(x.max())
    hi = max(hi, lo + 1.0)
    step = (hi - lo) / (bases - 3)
    knots = lo + step * np.arange(-3, bases + 1)
    inside = np.clip(x, knots[3], knots[bases])  # the span, as rounded
    return np.asarray(BSpline.design_matrix(inside, knots, 3).toarray())


@dataclass(frozen=True)
class _Fit:
    beta: FloatArray
    q: FloatArray
    deviance: float
    dof: float  # effective degrees of freedom: trace of the smoother's hat matrix


def _penalised_logistic(
    x: FloatArray, y: FloatArray, w: FloatArray, penalty: FloatArray, start: FloatArray
) -> _Fit:
    """Weighted logistic regression maximising the likelihood less ``beta' penalty beta / 2``
    (Newton steps)."""
    beta = start.copy()
    for _ in range(100):
        q = 1.0 / (1.0 + np.exp(-np.clip(x @ beta, -30, 30)))
        grad = x.T @ (w * (y - q)) - penalty @ beta
        hess = (x * (w * q * (1 - q))[:, None]).T @ x + penalty
        step = np.linalg.solve(hess, grad)
        beta += step
        if np.max(np.abs(step)) < 1e-8:
            break
    q = 1.0 / (1.0 + np.exp(-np.clip(x @ beta, -30, 30)))
    info = (x * (w * q * (1 - q))[:, None]).T @ x
    dof = float(np.trace(np.linalg.solve(info + penalty, info)))
    p = np.clip(q, 1e-12, 1 - 1e-12)
    deviance = float(-2.0 * np.sum(w * (y * np.log(p) + (1 - y) * np.log(1 - p))))
    return _Fit(beta, q, deviance, dof)


def harm_probability(
    sample: AuditSample, ridge: float = 1e-3, *, bases: int = SPLINE_BASES,
    smoothing: tuple[float, ...] = SMOOTHING, per_dof: float | None = None,
) -> FloatArray:  # fmt: skip
    """``P(harmful | s1, s2)`` for each image of ``sample``, fitted on the same sample (weighted
    by inverse inclusion probability): an additive logistic model ``b + f1(logit s1) +
    f2(logit s2)``, each ``f`` a penalised cubic spline (a P-spline: Eilers & Marx 1996).

    The penalty on second differences of each spline's coefficients shrinks ``f`` toward a
    straight line, so as it grows the fit becomes the logistic regression on the two logits
    (the stiffest one tried is that, to within a bend nobody would see). The penalty is chosen
    among ``smoothing`` by the Bayesian information criterion (deviance + ``log n`` x effective
    degrees of freedom; ``per_dof`` overrides ``log n``): the stiff fit
    wins unless the labels clearly ask for a bend, so few labels, or a world whose posterior
    is logistic, get the logistic regression. The bend is there for a calibrated stage 2 with
    an undecidable band: its ``P(harmful | s2)`` is about 0 below the band, a third in it and
    1 near 1, which no one slope draws (a logistic fit overstates the risk of allowing low
    stage-2 scores, which misorders the sequence and misprices the choice among certified
    sets). A small ``ridge`` keeps the answers finite on a sample without one of the classes.
    """
    if sample.n == 0:
        return np.zeros(0)
    y, w = sample.label, sample.weights / sample.weights.mean()
    x = np.column_stack([np.ones(sample.n)] + [_spline_basis(v, bases) for v in _logits(sample)])
    second = np.diff(np.eye(bases), 2, axis=0)
    rough = np.zeros((x.shape[1], x.shape[1]))
    for k in range(2):
        part = slice(1 + k * bases, 1 + (k + 1) * bases)
        rough[part, part] = second.T @ second
    ridge_part = ridge * np.eye(x.shape[1])
    price = np.log(max(sample.n, 2)) if per_dof is None else per_dof
    start, best = np.zeros(x.shape[1]), None
    for lam in smoothing:
        fit = _penalised_logistic(x, y, w, lam * rough + ridge_part, start)
        start = fit.beta
        if best is None or fit.deviance + price * fit.dof < best.deviance + price * best.dof:
            best = fit
    assert best is not None, "no smoothing penalty to try"
    return best.q


def frontier(cost: FloatArray, risk: FloatArray) -> list[Pair]:
    """The sequence to test: pairs in order of rising estimated ``risk``, each strictly cheaper
    (by ``cost``, which excludes the priced risk) than every pair before it.

    It is not cut at the pair that ``D1`` prices cheapest (cost plus the price of its estimated
    risk): a fixed sequence loses nothing to pairs after the ones that matter, and the choice
    among certified pairs is made later on all the audit data, whose estimate of the risk rests
    on more labels than ``D1``'s. Cut there, the sequence ended wherever ``D1``'s smoother put the
    optimum, which cost money whenever it overstated the risk of cheap pairs.
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
    return path


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
