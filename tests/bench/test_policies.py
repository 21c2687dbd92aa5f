import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from feedback.bound import miss_pvalues
from feedback.costs import StageCosts
from feedback.optimise import ThresholdGrid
from services.bench.policies import (
    compare_policies,
    headline,
    single_stage_point,
    synthetic_scores,
    tune_single_stage,
)

COSTS = StageCosts(stage1=1e-7, stage2=1.2e-6, human=0.05, miss=5.0, false_block=0.5)


def test_single_stage_tuning_matches_exhaustive_search() -> None:
    s1, _, y = synthetic_scores(6000, seed=4)
    grid = ThresholdGrid.default(per_side=6)
    alpha, delta, free_miss = 0.01, 0.1, StageCosts(1e-7, 1.2e-6, 0.05, 0.0, 0.5)
    lo, hi, ok = tune_single_stage(s1, y, free_miss, 1e-7, alpha=alpha, delta=delta, grid=grid)
    assert ok
    best = np.inf
    for lo_c in grid.values[: grid.n_lo]:
        k = int(np.sum((y == 1) & (s1 < lo_c)))
        if miss_pvalues(k, len(y), alpha) > delta:
            break  # fixed sequence: stop at the first failure
        for hi_c in grid.values[grid.values >= lo_c]:
            p = single_stage_point("stage1+humans", s1, y, lo_c, hi_c, free_miss, 1e-7, alpha, True)
            best = min(best, p.operating_cost)
    chosen = single_stage_point("stage1+humans", s1, y, lo, hi, free_miss, 1e-7, alpha, True)
    assert chosen.operating_cost == pytest.approx(best, rel=1e-9)


def test_policies_compare_on_held_out_scores() -> None:
    s1, s2, y = synthetic_scores(40_000, seed=1)
    points = compare_policies(s1, s2, y, COSTS, alphas=(0.002, 0.005, 0.02), delta=0.05)
    assert [p.policy for p in points[:3]] == ["stage1+humans", "stage2+humans", "cascade"]
    for p in points:
        assert p.certified
        assert p.stage1_share + p.stage2_share + p.human_share == pytest.approx(1.0)
        assert p.miss_rate <= p.alpha * 1.25  # held out: the bound plus sampling noise
    by = {(p.policy, p.alpha): p for p in points}
    assert by["stage1+humans", 0.02].compute_cost == COSTS.stage1
    assert by["stage2+humans", 0.02].compute_cost == COSTS.stage2
    cascade = by["cascade", 0.02]
    assert COSTS.stage1 < cascade.compute_cost < COSTS.stage2
    assert cascade.stage1_share > 0.5  # the screener settles most images
    h = headline(points, 0.005)
    assert h["cascade_matched"] is not None
    assert h["cascade_matched"]["miss_rate"] <= h["stage2_only"]["miss_rate"]  # type: ignore[index]
    assert isinstance(h["cost_ratio"], float) and isinstance(h["compute_target_met"], bool)


def test_resampled_figures_repeat_the_summary_on_other_splits() -> None:
    from services.bench.cascade_summary import policy_figures, resampled

    s1, s2, y = synthetic_scores(8000, seed=3)
    probs, alpha = {1: s1, 2: s2}, 0.004
    again = resampled(probs, y, COSTS, alpha=alpha, delta=0.1, splits=4, seed=7)
    runs = again["per_split"]
    assert [r["seed"] for r in runs] == [7, 8, 9, 10]
    first = policy_figures(
        compare_policies(s1, s2, y, COSTS, alphas=(alpha,), delta=0.1, seed=7), alpha
    )
    assert {k: runs[0][k] for k in first} == first  # the first split is the summary's own
    ratios = [r["total_cost_ratio"] for r in runs]
    assert len(set(ratios)) > 1  # other splits, other tunings: the figure really varies
    total = again["figures"]["total_cost_ratio"]
    assert total["min"] <= total["mean"] <= total["max"]
    assert total["met_share"] == np.mean([r < 1 for r in ratios])
    assert "met_share" not in again["figures"]["miss_rate"]  # no target: no share
    lean = resampled(probs, y, COSTS, alpha=alpha, delta=0.1, splits=4, seed=7, tie_break_se=3)
    for tied, cheap in zip(lean["per_split"], runs, strict=True):
        assert tied["certified"] == cheap["certified"]  # same split, same certificate
        assert tied["stage1_decided_share"] >= cheap["stage1_decided_share"] - 0.02
    priced = resampled(probs, y, COSTS, alpha=alpha, delta=0.1, splits=4, seed=7,
                       price_misses=True)  # fmt: skip
    priced_miss = np.mean([r["miss_rate"] for r in priced["per_split"]])
    assert priced_miss <= np.mean([r["miss_rate"] for r in runs])  # $5 a miss: fewer misses


SUMMARY_KEYS = {
    "compute_cost_ratio", "total_cost_ratio", "human_share", "stage1_decided_share",
    "max_confident_error_rate", "prevalence", "alpha", "certified", "n_images",
    "stage2_needed_share", "ambiguous_share",
}  # fmt: skip


@pytest.mark.slow
@pytest.mark.timeout(900)  # exports and times two preset models: minutes on a busy 2-core box
def test_bench_command_writes_its_reports_with_exactly_the_summary_keys(tmp_path: Path) -> None:
    """Real engines (tiny untrained models), a small generated traffic set, prices measured."""
    from models.testing import make_tiny_model_dir
    from services.cli import main

    models = make_tiny_model_dir(tmp_path / "models", size=32)
    args = ["bench", "cascade", "--model-dir", str(models), "--traffic-dir",
            str(tmp_path / "traffic"), "--n", "300", "--prevalence", "0.1",
            "--price-preset", "demo", "--out", str(tmp_path / "out")]  # fmt: skip
    out = CliRunner().invoke(main, args)
    assert out.exit_code == 0, out.output
    result = json.loads((tmp_path / "out" / "cascade.json").read_text())
    summary = result["summary"]
    assert set(summary) == SUMMARY_KEYS
    assert summary["n_images"] == 300 and summary["alpha"] == pytest.approx(0.05 * 0.1)
    assert summary["prevalence"] == pytest.approx(
        np.mean([r["label"] == "block" for r in map(json.loads, (tmp_path / "traffic" / "manifest.jsonl").read_text().splitlines())])
    )  # fmt: skip
    assert {p["policy"] for p in result["points"]} == {"stage1+humans", "stage2+humans", "cascade"}
    assert {(r["band"], r["label"]) for r in result["bands"]} <= {
        (b, lab) for b in ("easy", "medium", "ambiguous") for lab in ("allow", "block")
    }
    for stage in ("stage1", "stage2"):
        assert result["prices"]["priced_by"][stage]["seconds_per_image"] > 0
        assert result["prices"]["demo_models"][stage]["seconds_per_image"] > 0
    assert len(result["resampled"]["per_split"]) == 50
    variants = result["resampled_variants"]
    assert result["resampled"]["tie_break_se"] == 0.0 and not result["resampled"]["price_misses"]
    assert variants["tie_break"]["tie_break_se"] == 1.0
    assert variants["misses_priced"]["price_misses"] is True
    assert all(len(v["per_split"]) == 50 for v in variants.values())
    assert "misses priced in tuning" in (tmp_path / "out" / "cascade.md").read_text()
    assert (tmp_path / "out" / "cascade.png").read_bytes()[:4] == b"\x89PNG"
    assert "`stage1_decided_share`" in (tmp_path / "out" / "cascade.md").read_text()
