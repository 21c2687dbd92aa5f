import numpy as np
import pytest

from feedback.bound import clopper_pearson_upper, excess_pvalue, miss_pvalues


@pytest.mark.parametrize(("k", "n"), [(0, 50), (3, 300), (40, 1000), (7, 20)])
def test_bound_and_pvalue_are_dual(k: int, n: int) -> None:
    delta = 0.05
    upper = clopper_pearson_upper(k, n, delta)
    assert k / n < upper < 1
    # At the bound the exact tail equals delta; just above it the null is rejected.
    assert miss_pvalues(k, n, upper) == pytest.approx(delta, rel=1e-6)
    assert miss_pvalues(k, n, upper * 1.01) < delta < miss_pvalues(k, n, upper * 0.99)


def test_bound_covers_the_true_rate_at_least_one_minus_delta() -> None:
    rng = np.random.default_rng(0)
    rate, n, delta = 0.03, 400, 0.1
    ks = rng.binomial(n, rate, size=4000)
    upper = {int(k): clopper_pearson_upper(int(k), n, delta) for k in np.unique(ks)}
    covered = np.mean([upper[int(k)] >= rate for k in ks])
    assert covered >= 1 - delta
    assert covered < 0.99  # exact, not absurdly conservative


def test_bound_edge_cases() -> None:
    assert clopper_pearson_upper(0, 0, 0.05) == 1.0
    assert clopper_pearson_upper(5, 5, 0.05) == 1.0
    assert clopper_pearson_upper(0, 299, 0.05) == pytest.approx(1 - 0.05 ** (1 / 299))
    with pytest.raises(ValueError):
        clopper_pearson_upper(1, 10, 1.5)


def test_excess_pvalue_flags_only_real_excess() -> None:
    assert excess_pvalue(0, 3.0) == 1.0
    assert excess_pvalue(4, 3.0) > 0.3
    assert excess_pvalue(15, 3.0) < 1e-4
    assert excess_pvalue(1, 0.0) == 0.0
