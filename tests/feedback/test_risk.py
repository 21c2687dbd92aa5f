import math

import numpy as np
import pytest

from feedback.bound import miss_pvalues
from feedback.risk import (
    audit_need,
    critical_count,
    labels_needed,
    rate_interval,
    size_of_test_part,
    split_budget,
)


def test_budget_split_adds_up_to_delta() -> None:
    assert split_budget(0.1, None) == split_budget(0.1, None, 0.9)
    one = split_budget(0.1, None)
    assert (one.miss, one.false_block) == (0.1, 0.0)
    two = split_budget(0.1, 0.01, miss_share=0.7)
    assert two.miss == pytest.approx(0.07) and two.miss + two.false_block == pytest.approx(0.1)
    with pytest.raises(ValueError):
        split_budget(0.1, 0.01, miss_share=1.0)


def test_critical_count_is_the_largest_count_that_passes() -> None:
    for n, limit, level in [(10_000, 0.001, 0.1), (1400, 0.003, 0.1), (500, 0.001, 0.1)]:
        c = critical_count(n, limit, level)
        if c >= 0:
            assert miss_pvalues(c, n, limit) <= level
        assert miss_pvalues(c + 1, n, limit) > level
    assert critical_count(500, 0.001, 0.1) == -1  # 500 images cannot certify 0.1 %


def test_size_of_test_part_keeps_the_critical_count_with_fewer_images() -> None:
    room = 7000
    n = size_of_test_part(room, 0.001, 0.1)
    assert n <= room
    assert critical_count(n, 0.001, 0.1) == critical_count(room, 0.001, 0.1)
    assert critical_count(n - 1, 0.001, 0.1) < critical_count(room, 0.001, 0.1)
    assert size_of_test_part(100, 0.001, 0.1) == 100  # nothing can pass: keep them all


def test_labels_needed_zero_and_half_budget() -> None:
    assert labels_needed(0.001, 0.1) == math.ceil(math.log(0.1) / math.log1p(-0.001))
    n = labels_needed(0.001, 0.1, rate=0.0005)
    assert critical_count(n, 0.001, 0.1) >= math.floor(n * 0.0005)
    assert n > labels_needed(0.001, 0.1)
    with pytest.raises(ValueError):
        labels_needed(0.001, 0.1, rate=0.002)


def test_audit_need_and_the_rate_that_collects_it_in_a_week() -> None:
    need = audit_need(0.001, 0.1, test_share=0.7, traffic_per_hour=1000.0)
    assert need.at_least == math.ceil(labels_needed(0.001, 0.1) / 0.7)
    assert need.useful > need.at_least
    assert need.audit_rate == pytest.approx(need.useful / (1000.0 * 168))
    assert audit_need(0.001, 0.1, 0.7).audit_rate is None


def test_rate_interval_covers_the_true_rate_by_repeated_draws() -> None:
    rng = np.random.default_rng(1)
    rate, n, confidence = 0.004, 2000, 0.9
    ks = rng.binomial(n, rate, size=3000)
    bounds = {int(k): rate_interval(int(k), n, confidence) for k in np.unique(ks)}
    covered = np.mean([bounds[int(k)][0] <= rate <= bounds[int(k)][1] for k in ks])
    assert confidence <= covered < 0.99
    assert rate_interval(0, 100, 0.9)[0] == 0.0 and rate_interval(100, 100, 0.9)[1] == 1.0
