"""The cheapest threshold set whose miss rate (and, optionally, false-block rate) is certified.

The guarantee: with probability at least ``1 - delta`` over the draw of the audit sample,
*every* set the procedure certifies has a true miss rate <= ``alpha`` (and false-block rate
<= ``beta`` when asked) on traffic like the audit window's — so the cheapest of them does too,
however it was picked. How (details and the proof in :mod:`feedback.ltt`):

1. **Candidates** come from a fixed grid (:class:`feedback.tables.ThresholdGrid`), with
   ``t_lo <= t_hi`` at both stages and allow thresholds only up to ``max_allow``.
2. **Envelopes**: misses depend only on the allow pair ``(t1_lo, t2_lo)``, false blocks only on
   the block pair ``(t1_hi, t2_hi)`` (:mod:`feedback.tables`), so each risk is tested on pairs
   and a certificate covers every completion of the pair.
3. **Learn then test**: an ordering sample (a random ``order_share`` of the audit sample, or a
   previous, non-overlapping audit window passed as ``order_sample``) puts the pairs into one
   sequence from safest to cheapest; the rest of the sample tests along it with exact binomial
   p-values at the full level (no Bonferroni over the grid).
4. **Cost** (expected $/image, :mod:`feedback.estimate`) is then minimised on *all* the audit
   data over every certified allow pair and block pair, optionally under a cap on human reviews
   per hour (a point-estimate constraint: the guarantees are on the two error rates).
5. **Optionally, one standard error**: with ``tie_break_se`` > 0, among the certified sets
   whose cost is within that many standard errors (paired on the audit images) of the cheapest,
   the one sending the fewest images to stage 2 is chosen (:mod:`feedback.tiebreak`): a
   smaller stage-2 pool for a small, measured premium in cost. Off by default.
6. **Tighten freely, loosen on evidence** (``incumbent``, :mod:`feedback.incumbent`): the set
   in force stays when the certificate covers it and the new set would allow more
   automatically without the audit labels, paired image by image, showing it cheaper by
   ``switch_se`` standard errors.

Nothing certifiable → a **fallback**: it allows nothing automatically (miss rate zero by
construction, no test needed) and blocks by the thresholds that cost least (certified ones when
a false-block bound is asked); flagged, with the audit size that would certify.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import stats

from cascade.policy import DEFAULT_THRESHOLDS, ThresholdSet
from feedback import ltt
from feedback.costs import StageCosts
from feedback.estimate import Estimate, estimate
from feedback.incumbent import SWITCH_SE, Comparison, compare, covering, covering_blocks
from feedback.risk import AuditNeed, audit_need, rate_interval, split_budget
from feedback.sample import AuditSample, equal_probability_subsample
from feedback.tables import (
    BoolArray,
    CellTables,
    ThresholdGrid,
    cost_per_allow_pair,
    cost_per_block_pair,
    false_block_envelope,
    miss_envelope,
    search,
)
from feedback.tiebreak import leanest_within

__all__ = ["FALLBACK", "Optimum", "ThresholdGrid", "cheapest", "optimise"]

# Used only when there is no audit data at all: allows nothing automatically (no score is
# below 0), so its miss rate is zero by construction; blocks keep the hand-set defaults.
FALLBACK = ThresholdSet(
    t1_lo=0.0, t1_hi=DEFAULT_THRESHOLDS.t1_hi, t2_lo=0.0, t2_hi=DEFAULT_THRESHOLDS.t2_hi
)
ORDER_SHARE = 0.3
TIE_BREAK_SE = 0.0  # off: see feedback/tiebreak.py for what the rule costs


@dataclass(frozen=True)
class Optimum:
    """The chosen set, what it is expected to do, and how much to trust that.

    ``miss_rate_bound`` is the one-sided exact bound of the chosen set's own count on the
    testing sample at the miss level (what it would pass at alone); the guarantee is
    ``alpha``. Intervals are two-sided at ``1 - delta`` on all the audit data, per set.
    """

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
    beta: float | None = None
    false_block_level: float = 0.0
    false_block_bound: float | None = None
    miss_interval: tuple[float, float] | None = None
    false_block_interval: tuple[float, float] | None = None
    design: str = "split"
    n_order_samples: int = 0
    sequence_length: int = 0
    need: AuditNeed | None = None
    kept: bool = False  # the incumbent stayed: the new set would allow more, not shown cheaper
    comparison: Comparison | None = None  # the best new set against the incumbent


def cheapest(
    sample: AuditSample,
    grid: ThresholdGrid,
    costs: StageCosts,
    allowed: BoolArray,
    review_limit: float | None = None,
    blockable: BoolArray | None = None,
) -> tuple[int, int, int, int]:
    """Grid indices ``(t1_lo, t1_hi, t2_lo, t2_hi)`` of the cheapest set with an ``allowed``
    allow pair (and ``blockable`` block pair) whose human share is <= ``review_limit``."""
    found = search(
        CellTables.from_sample(sample, grid), costs, grid.n_lo, allowed, review_limit, blockable
    )
    if found is None:
        raise ValueError("no candidate fits: allow at least one pair, or relax the review limit")
    return found


@dataclass(frozen=True, eq=False)
class _Tests:
    """What the testing sample said about both sequences."""

    miss: ltt.SequenceTest
    false_block: ltt.SequenceTest | None
    n_order: int


def _order(
    order: AuditSample, grid: ThresholdGrid, costs: StageCosts, *, alpha: float,
    beta: float | None, limit: float | None, ceiling: ThresholdSet | None,
) -> tuple[list[ltt.Pair], list[ltt.Pair]]:  # fmt: skip
    """The sequences to test, learnt on ``order`` alone: allow pairs (and block pairs).

    Labels enter through a model of ``P(harmful | scores)`` fitted on ``order``: smooth
    estimates of both risks and of the cost's error terms. Each sequence is costed with the
    other risk held to the ordering sample's estimate of its own bound.
    """
    n_lo = grid.n_lo
    if order.n == 0:
        return [], []
    w = order.weights / order.weights.sum()
    q = ltt.harm_probability(order)
    harm, safe = grid.mass(order, w * q), grid.mass(order, w * (1 - q))
    tables = CellTables.from_cells(safe, harm)
    risk, fb_risk = miss_envelope(harm, n_lo), false_block_envelope(safe)
    blockable = None if beta is None else fb_risk <= beta
    cost = cost_per_allow_pair(tables, replace(costs, miss=0.0), n_lo, limit, blockable)
    if ceiling is not None:
        lo = grid.values[:n_lo]
        cost[~((lo <= ceiling.t1_lo)[:, None] & (lo <= ceiling.t2_lo)[None, :])] = np.inf
    path = ltt.frontier(cost, risk)
    if beta is None:
        return path, []
    plan = (risk <= alpha) & np.isfinite(cost)
    plan[0, 0] = True
    fb_cost = cost_per_block_pair(tables, replace(costs, false_block=0.0), n_lo, plan, limit)
    return path, ltt.frontier(fb_cost, fb_risk)


def _test(
    testing: AuditSample, order: AuditSample, grid: ThresholdGrid, costs: StageCosts, *,
    alpha: float, beta: float | None, levels: tuple[float, float], limit: float | None,
    ceiling: ThresholdSet | None,
) -> _Tests:  # fmt: skip
    """Order the pairs on ``order``, test them on ``testing`` (see :mod:`feedback.ltt`)."""
    path, fb_path = _order(order, grid, costs, alpha=alpha, beta=beta, limit=limit,
                           ceiling=ceiling)  # fmt: skip
    benign, harmful = grid.cells(testing, np.ones(testing.n))
    n, n_lo = testing.n, grid.n_lo
    miss = ltt.certify_sequence(path, miss_envelope(harmful, n_lo), n, alpha, levels[0])
    fb = None
    if beta is not None:
        fb = ltt.certify_sequence(fb_path, false_block_envelope(benign), n, beta, levels[1])
    return _Tests(miss, fb, order.n)


@dataclass(frozen=True)
class _Ask:
    """What was asked, carried to the result."""

    alpha: float
    delta: float
    beta: float | None
    need: AuditNeed
    design: str
    review_limit: float | None
    tie_break_se: float = TIE_BREAK_SE
    leaner: bool = False  # the tie-break chose a set other than the cheapest
    incumbent: ThresholdSet | None = None
    switch_se: float = SWITCH_SE


def optimise(
    sample: AuditSample,
    costs: StageCosts,
    *,
    alpha: float,
    delta: float,
    beta: float | None = None,
    miss_share: float = 0.5,
    grid: ThresholdGrid | None = None,
    traffic_per_hour: float | None = None,
    max_reviews_per_hour: float | None = None,
    ceiling: ThresholdSet | None = None,
    order_sample: AuditSample | None = None,
    order_share: float = ORDER_SHARE,
    seed: int = 0,
    tie_break_se: float = TIE_BREAK_SE,
    incumbent: ThresholdSet | None = None,
    switch_se: float = SWITCH_SE,
) -> Optimum:
    """The cheapest certified threshold set (see the module docstring for the procedure).

    ``beta`` asks for a false-block bound too (budget split by ``miss_share``, see
    :mod:`feedback.risk`). ``order_sample``: a previous audit window sharing no image with
    ``sample``; then all of ``sample`` tests, else a random ``order_share`` of it orders.
    ``ceiling`` limits the allow thresholds (no higher than its own): a retune triggered by
    appeals, reports or drift may only tighten what is allowed automatically.
    ``tie_break_se``: how many standard errors above the cheapest a set may cost and still be
    chosen for sending fewer images to stage 2 (0: the cheapest, as estimated).
    ``incumbent``: the set in force; it stays when the certificate covers it and the new set
    would allow more without being cheaper on the audit labels by ``switch_se`` standard errors
    (:mod:`feedback.incumbent`).
    """
    grid = grid or ThresholdGrid.default()
    budget = split_budget(delta, beta, miss_share)
    limit = None
    if max_reviews_per_hour is not None and traffic_per_hour:
        limit = max_reviews_per_hour / traffic_per_hour
    previous = order_sample if order_sample is not None and order_sample.n > 0 else None
    test_share = 1.0 if previous is not None else 1.0 - order_share
    ask = _Ask(alpha, delta, beta, audit_need(alpha, budget.miss, test_share, traffic_per_hour),
               "split" if previous is None else "previous window", limit,
               tie_break_se, incumbent=incumbent, switch_se=switch_se)  # fmt: skip
    if sample.n == 0:
        return _empty(ask, budget.miss)
    order, testing = ltt.split(sample, limit=alpha, level=budget.miss, order_share=order_share,
                               previous=previous, seed=seed)  # fmt: skip
    tests = _test(testing, order, grid, costs, alpha=alpha, beta=beta,
                  levels=(budget.miss, budget.false_block), limit=limit,
                  ceiling=ceiling)  # fmt: skip
    return _choose(sample, grid, costs, tests, ask)


def _choose(
    sample: AuditSample, grid: ThresholdGrid, costs: StageCosts, tests: _Tests, ask: _Ask
) -> Optimum:
    """The cheapest set among the certified pairs, or the leanest within ``tie_break_se``
    standard errors of it; allow nothing when no allow pair is certified."""
    n_lo, size = grid.n_lo, grid.size
    allowed = tests.miss.mask((n_lo, n_lo))
    blockable = None if tests.false_block is None else tests.false_block.mask((size, size))
    if blockable is not None and not blockable.any():
        blockable = np.zeros((size, size), dtype=bool)
        blockable[-1, -1] = True  # blocks only scores of exactly 1.0: the least it can do
    fallback = not allowed.any()
    if fallback:
        allowed = np.zeros((n_lo, n_lo), dtype=bool)
        allowed[0, 0] = True  # allows nothing automatically: no misses, no test needed
    tables = _selection_tables(sample, grid)
    limit = ask.review_limit
    found = search(tables, costs, n_lo, allowed, limit, blockable)
    if found is None:  # no certified completion meets the review cap: drop the cap
        limit = None
        found = search(tables, costs, n_lo, allowed, limit, blockable)
    assert found is not None  # t1_hi = t1_lo = 0 is always a completion
    cheapest_found = found
    if ask.tie_break_se > 0 and not fallback:
        found = leanest_within(sample, grid, tables, costs, found, (allowed, blockable), limit,
                               ask.tie_break_se)  # fmt: skip
    if found != cheapest_found:
        ask = replace(ask, leaner=True)
    i, j, k, m = found
    v = grid.values
    ts = ThresholdSet(float(v[i]), float(v[j]), float(v[k]), float(v[m]))
    if ask.incumbent is not None and not fallback:
        kept = _keep(sample, grid, costs, tests, ts, ask, limit)
        if kept is not None:
            return kept
    return _result(sample, ts, (i, k), (j, m), costs, tests, fallback, ask)


def _keep(
    sample: AuditSample, grid: ThresholdGrid, costs: StageCosts, tests: _Tests,
    candidate: ThresholdSet, ask: _Ask, limit: float | None,
) -> Optimum | None:  # fmt: skip
    """The incumbent as the result when the rule keeps it (:mod:`feedback.incumbent`), else
    None. Its bounds are those of the certified pairs that cover it with the fewest errors."""
    incumbent = ask.incumbent
    assert incumbent is not None
    mt, ft = tests.miss, tests.false_block
    allow = covering(incumbent, grid.values, mt.certified)
    block = None if ft is None else covering_blocks(incumbent, grid.values, ft.certified)
    if not allow or block == []:
        return None
    if limit is not None and estimate(sample, incumbent, costs).human_share > limit:
        return None
    comparison = compare(sample, candidate, incumbent, costs, ask.switch_se)
    if comparison.switch:
        return None
    pair = min(allow, key=mt.count_of)
    block_pair = (-1, -1) if ft is None or block is None else min(block, key=ft.count_of)
    kept = _result(sample, incumbent, pair, block_pair, costs, tests, False,
                   replace(ask, leaner=False))  # fmt: skip
    return replace(kept, kept=True, comparison=comparison, note=kept.note + (
        f"; kept the set in force: the cheapest new one would allow more automatically and "
        f"costs {_per_thousand(comparison.difference)} ± {_per_thousand(comparison.se)} per "
        f"1,000 images against it on the audit labels, not {ask.switch_se:g} standard "
        f"error{'' if ask.switch_se == 1 else 's'} less"
    ))  # fmt: skip


def _per_thousand(per_image: float) -> str:
    return f"{per_image * 1000:+.3f} $"


def _selection_tables(sample: AuditSample, grid: ThresholdGrid) -> CellTables:
    """Weights for choosing among certified sets: the error terms smoothed by a model of
    ``P(harmful | scores)`` fitted on all the audit data. Choosing the minimum of noisy cost
    estimates favours sets whose errors happened to be undercounted; smoothing lowers that
    noise. The reported estimate stays the unbiased, design-based one."""
    q = ltt.harm_probability(sample)
    w = sample.weights / sample.weights.sum()
    return CellTables.from_cells(grid.mass(sample, w * (1 - q)), grid.mass(sample, w * q))


def _result(
    sample: AuditSample, ts: ThresholdSet, allow: tuple[int, int], block: tuple[int, int],
    costs: StageCosts, tests: _Tests, fallback: bool, ask: _Ask,
) -> Optimum:  # fmt: skip
    mt, ft = tests.miss, tests.false_block
    thin = equal_probability_subsample(sample)
    seen = estimate(thin, ts, costs)  # plain counts over one common inclusion probability
    fb_bound = None
    if ft is not None and block in ft.certified:
        fb_bound = _upper(ft.count_of(block), ft.n, ft.level)
    certified = not fallback and (ask.beta is None or fb_bound is not None)
    return Optimum(
        thresholds=ts, estimate=estimate(sample, ts, costs),
        miss_rate_bound=0.0 if fallback else _upper(mt.count_of(allow), mt.n, mt.level),
        certified=certified, fallback=fallback, alpha=ask.alpha, delta=ask.delta,
        level=mt.level, n_samples=sample.n, n_bound_samples=mt.n,
        n_certified=len(mt.certified), note=_note(ts, mt, fallback, fb_bound, ask),
        beta=ask.beta, false_block_level=0.0 if ft is None else ft.level,
        false_block_bound=fb_bound,
        miss_interval=rate_interval(round(seen.miss_rate * thin.n), thin.n, 1 - ask.delta),
        false_block_interval=rate_interval(round(seen.false_block_rate * thin.n), thin.n,
                                           1 - ask.delta),
        design=ask.design, n_order_samples=tests.n_order, sequence_length=len(mt.path),
        need=ask.need,
    )  # fmt: skip


def _note(
    ts: ThresholdSet, mt: ltt.SequenceTest, fallback: bool, fb_bound: float | None, ask: _Ask
) -> str:
    """Plain words: what is certified, and what would certify when nothing is."""
    if fallback:
        need = ask.need
        note = (
            f"nothing certified: {mt.n} testing audit images; at alpha={ask.alpha} even a set "
            f"with no misses needs {need.at_least} labelled audit images, a useful one about "
            f"{need.useful}"
        )
        if need.audit_rate is not None:
            note += f" (an audit rate of {need.audit_rate:.3g} collects that in a week)"
        return note
    note = "certified"
    if ask.beta is not None and fb_bound is None:
        note = f"misses certified; no block thresholds certified at beta={ask.beta}: blocks only scores of 1.0"
    if ask.review_limit is not None:
        note += f"; at most {ask.review_limit:.4g} of images to humans"
    if ask.leaner:
        plural = "" if ask.tie_break_se == 1 else "s"
        note += (f"; the set with the fewest images to stage 2 within {ask.tie_break_se:g} "
                 f"standard error{plural} of the cheapest")  # fmt: skip
    return note


def _upper(k: int, n: int, level: float) -> float:
    return float(stats.beta.ppf(1.0 - level, k + 1, n - k)) if 0 <= k < n else 1.0


def _empty(ask: _Ask, level: float) -> Optimum:
    return Optimum(
        thresholds=FALLBACK, estimate=None, miss_rate_bound=0.0, certified=False, fallback=True,
        alpha=ask.alpha, delta=ask.delta, level=level, n_samples=0, n_bound_samples=0,
        n_certified=0, note="no labelled audit images yet", beta=ask.beta, design=ask.design,
        need=ask.need,
    )  # fmt: skip
