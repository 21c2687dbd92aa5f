import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cascade.policy import (
    ALLOW_CODE,
    BLOCK_CODE,
    REVIEW_CODE,
    Route,
    ThresholdSet,
    route_arrays,
    route_stage1,
    route_stage2,
)

TS = ThresholdSet(t1_lo=0.1, t1_hi=0.9, t2_lo=0.2, t2_hi=0.8)


def test_stage1_routes_by_thresholds():
    assert route_stage1(0.05, TS) is Route.ALLOW
    assert route_stage1(0.1, TS) is Route.STAGE2  # low threshold is exclusive for allow
    assert route_stage1(0.5, TS) is Route.STAGE2
    assert route_stage1(0.9, TS) is Route.BLOCK  # high threshold is inclusive for block


def test_stage2_routes_by_thresholds():
    assert route_stage2(0.1, TS) is Route.ALLOW
    assert route_stage2(0.5, TS) is Route.REVIEW
    assert route_stage2(0.8, TS) is Route.BLOCK


@pytest.mark.parametrize(
    "kwargs",
    [dict(t1_lo=0.5, t1_hi=0.4, t2_lo=0, t2_hi=1), dict(t1_lo=-0.1, t1_hi=1, t2_lo=0, t2_hi=1)],
)
def test_invalid_threshold_sets_are_refused(kwargs):
    with pytest.raises(ValueError):
        ThresholdSet(**kwargs)


unit = st.floats(0, 1, allow_nan=False)


@given(s1=unit, s2=unit, a=unit, b=unit, c=unit, d=unit)
def test_vectorised_route_matches_scalar_route(s1, s2, a, b, c, d):
    ts = ThresholdSet(min(a, b), max(a, b), min(c, d), max(c, d))
    final, reached2 = route_arrays(np.array([s1]), np.array([s2]), ts)
    r1 = route_stage1(s1, ts)
    assert bool(reached2[0]) == (r1 is Route.STAGE2)
    expected = {Route.ALLOW: ALLOW_CODE, Route.BLOCK: BLOCK_CODE, Route.REVIEW: REVIEW_CODE}
    scalar = r1 if r1 is not Route.STAGE2 else route_stage2(s2, ts)
    assert final[0] == expected[scalar]
