"""The demo's round summary: routes from the stored scores under the thresholds in force (an
audit labels an image, it does not decide it), and intervals that say what a round's size
allows."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from scipy import stats

from cascade.policy import ALLOW_CODE, BLOCK_CODE, REVIEW_CODE, ThresholdSet
from services.demo import automatic_routes, share_interval


def test_routes_come_from_the_scores_and_the_thresholds_in_force() -> None:
    ts = ThresholdSet(t1_lo=0.1, t1_hi=0.9, t2_lo=0.2, t2_hi=0.8)
    subs = [
        SimpleNamespace(s1=0.05, s2=None),  # allowed at stage 1
        SimpleNamespace(s1=0.05, s2=0.95),  # audited: stage 2 scored it, stage 1 decided
        SimpleNamespace(s1=0.95, s2=None),  # blocked at stage 1
        SimpleNamespace(s1=0.5, s2=0.1),  # allowed at stage 2
        SimpleNamespace(s1=0.5, s2=0.5),  # to a human
        SimpleNamespace(s1=0.5, s2=0.85),  # blocked at stage 2
    ]
    final, reached2 = automatic_routes(subs, ts)
    assert final.tolist() == [ALLOW_CODE, ALLOW_CODE, BLOCK_CODE, ALLOW_CODE, REVIEW_CODE, BLOCK_CODE]  # fmt: skip
    assert reached2.tolist() == [False, False, False, True, True, True]


@pytest.mark.parametrize(("k", "n"), [(0, 50), (3, 3000), (150, 3000), (40, 40)])
def test_share_interval_is_clopper_pearson(k: int, n: int) -> None:
    lo, hi = share_interval(k, n)
    assert 0.0 <= lo <= k / n <= hi <= 1.0
    # Exact coverage check at the edges: the interval's ends are where a tail is 2.5 %.
    if k > 0:
        assert stats.binom.sf(k - 1, n, lo) == pytest.approx(0.025, rel=1e-6)
    if k < n:
        assert stats.binom.cdf(k, n, hi) == pytest.approx(0.025, rel=1e-6)
    assert share_interval(0, 0) == (0.0, 1.0)


def test_a_larger_round_gives_a_narrower_interval() -> None:
    widths = [np.subtract(*share_interval(n // 20, n)[::-1]) for n in (400, 3000)]
    assert widths[1] < widths[0] / 2
