"""Exact binomial statistics: Clopper–Pearson bounds, Learn-then-Test p-values, tail tests."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import stats


def clopper_pearson_upper(k: int, n: int, delta: float) -> float:
    """One-sided upper bound on a binomial rate at confidence ``1 - delta`` (exact).

    ``P(rate <= bound) >= 1 - delta`` over the draw of the sample, for every true rate.
    """
    if not 0 < delta < 1:
        raise ValueError(f"delta={delta} must lie in (0, 1)")
    if n <= 0 or k >= n:
        return 1.0
    return float(stats.beta.ppf(1.0 - delta, k + 1, n - k))


def miss_pvalues(k: npt.ArrayLike, n: int, alpha: float) -> npt.NDArray[np.float64]:
    """p-values of H0 "rate >= alpha" given ``k`` events in ``n`` i.i.d. draws.

    ``P(Binomial(n, alpha) <= k)``: the chance of seeing so few events if the rate were alpha
    (larger rates make it smaller still, so it is valid for the whole null). Dual to the bound:
    ``p <= delta`` exactly when ``clopper_pearson_upper(k, n, delta) <= alpha``.
    """
    if n <= 0:
        return np.ones(np.shape(k))
    return np.asarray(stats.binom.cdf(np.asarray(k), n, alpha), dtype=np.float64)


def excess_pvalue(observed: int, expected: float) -> float:
    """Poisson tail ``P(X >= observed)`` for a count expected to be ``expected``.

    Small values say: more events than the model predicts. Rare events in a large window are
    Poisson to a very good approximation of the binomial.
    """
    if observed <= 0:
        return 1.0
    if expected <= 0:
        return 0.0
    return float(stats.poisson.sf(observed - 1, expected))
