"""`cascade bench loop`: the review rules it replays, and one small loop end to end."""

from __future__ import annotations

import numpy as np
from click.testing import CliRunner

from cascade.config import Settings
from feedback.costs import stage_costs
from services.bench.loop import LoopConfig, audit_labels, simulate

NAN = float("nan")


def _labels(y, auto, right, margin):  # type: ignore[no-untyped-def]
    return audit_labels(
        np.array(y, float), np.array(auto, float), np.array(right, bool).T, margin
    ).tolist()


def test_right_raters_give_the_truth_under_every_margin() -> None:
    y, auto = [0, 1, 1, 0], [0, 0, NAN, 1]
    for margin in (1, 2):
        assert _labels(y, auto, [[True] * 4] * 4, margin) == y


def test_a_lone_wrong_ruling_over_a_split_is_a_phantom_miss_only_at_margin_1() -> None:
    # benign, allowed automatically; moderators split; admin 1 wrong; admin 2 right / wrong
    split_wrong_admin = [True, False, False, True]
    both_admins_wrong = [True, False, False, False]
    assert _labels([0], [0], [split_wrong_admin], 1) == [1]
    assert _labels([0], [0], [split_wrong_admin], 2) == [0]
    assert _labels([0], [0], [both_admins_wrong], 2) == [1]
    # an escalated image (no automatic decision) takes admin 1's ruling at any margin
    assert _labels([0], [NAN], [split_wrong_admin], 2) == [1]


def test_agreeing_moderators_against_the_cascade_need_the_admin() -> None:
    both_wrong = [False, False, True, True]  # say harmful; admin 1 says benign
    assert _labels([0], [0], [both_wrong], 2) == [0]
    assert _labels([0], [0], [[False, False, False, True]], 1) == [1]
    # a real miss confirmed: both moderators and the admin right
    assert _labels([1], [0], [[True] * 4], 2) == [1]


def test_a_small_loop_runs_and_the_second_admin_removes_phantoms() -> None:
    rng = np.random.default_rng(0)
    n = 6000
    y = (rng.random(n) < 0.05).astype(float)
    s2 = np.clip(np.where(y == 1, rng.beta(8, 2, n), rng.beta(1, 30, n)), 0, 1)
    s1 = np.clip(0.7 * s2 + 0.3 * rng.random(n) * (y * 0.8 + 0.1), 0, 1)
    cfg = LoopConfig(round_images=3000, accuracy=0.9)
    result = simulate(s1, s2, y, stage_costs(Settings()), cfg, runs=3)
    assert set(result) == {"1", "2"}
    one, two = result["1"], result["2"]
    assert two["phantom_misses_per_round"] < one["phantom_misses_per_round"]
    assert one["before"] == two["before"]  # the same draws, the same initial thresholds
    assert len(one["ratios"]) == 3
    for m in (one, two):  # the optimiser's own pick is reported beside the rule's
        assert set(m["without_rule"]) == {"after", "fell_share", "rose_share",
                                          "humans_and_errors_ratio"}  # fmt: skip


def test_a_rule_that_always_may_keep_leaves_kept_runs_unchanged() -> None:
    rng = np.random.default_rng(1)
    n = 6000
    y = (rng.random(n) < 0.05).astype(float)
    s2 = np.clip(np.where(y == 1, rng.beta(8, 2, n), rng.beta(1, 30, n)), 0, 1)
    s1 = np.clip(0.7 * s2 + 0.3 * rng.random(n), 0, 1)
    cfg = LoopConfig(round_images=3000, switch_se=1e9)
    two = simulate(s1, s2, y, stage_costs(Settings()), cfg, runs=4)["2"]
    assert two["kept_share"] > 0
    assert np.mean(np.array(two["ratios"]) == 1.0) >= two["kept_share"]


def test_the_command_needs_models() -> None:
    from services.bench.loop import loop

    out = CliRunner().invoke(loop, ["--model-dir", "/nonexistent", "--runs", "2"])
    assert out.exit_code != 0 and "no trained models" in out.output
