import json
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from feedback.costs import StageCosts
from feedback.oracle import WorldTruth
from feedback.sample import AuditSample
from feedback.simulate import demo_world
from feedback.tables import ThresholdGrid
from services.bench.decision_quality import DecisionsConfig, bonferroni, run, targets
from services.bench.decisions import decisions, markdown, plot
from services.bench.report import write_report

COSTS = StageCosts(stage1=1e-7, stage2=1.2e-6, human=0.05, miss=5.0, false_block=0.5)
SMALL = DecisionsConfig(ns=(3000, 20_000), alphas=(0.003,), draws=4, drift_n=10_000,
                        drift_labels=1000, drift_draws=3)  # fmt: skip


def test_report_has_the_issue_keys_and_reads_its_own_targets(tmp_path: Path) -> None:
    result = run(COSTS, SMALL)
    result["targets"] = targets(result)
    for key in ("cost_over_optimum", "violation_rate", "fallback_rate"):
        assert set(result[key]) == {"alpha=0.003"}  # type: ignore[arg-type]
        assert set(result[key]["alpha=0.003"]) == {"n=3000", "n=20000"}  # type: ignore[index]
    assert all(c >= 1.0 - 1e-9 for c in result["cost_over_optimum"]["alpha=0.003"].values())  # type: ignore[index]
    drift = result["drift"]
    assert {"drift", "no_drift"} <= set(drift)  # type: ignore[arg-type]
    assert set(result["targets"]) >= {"violation_rate_at_most_delta",  # type: ignore[arg-type]
                                      "drift_detected_in_90%_within_labels"}  # fmt: skip
    paths = write_report(tmp_path, "decisions", result, markdown(result), plot(result))
    assert json.loads(paths[1].read_text())["config"]["draws"] == 4
    assert "Targets" in paths[0].read_text() and paths[2].read_bytes()[:4] == b"\x89PNG"


def test_bonferroni_baseline_is_the_old_design() -> None:
    grid = ThresholdGrid.default(per_side=8)
    truth = WorldTruth(demo_world(), grid, COSTS)
    s1, s2, label = demo_world().draw(np.random.default_rng(0), 1500)
    tiny = AuditSample.of(s1, s2, label, 0.02)
    ts = bonferroni(tiny, grid, COSTS, alpha=0.001, delta=0.1)
    assert (ts.t1_lo, ts.t2_lo) == (0.0, 0.0)  # 1,500 images cannot certify 0.1 % at delta/9
    assert truth.of(ts).miss_rate == 0.0


def test_only_drift_prints_the_drift_case_and_writes_no_report(tmp_path: Path) -> None:
    out = CliRunner().invoke(
        decisions, ["--only", "drift", "--drift-draws", "2", "--out", str(tmp_path)]
    )
    assert out.exit_code == 0, out.output
    assert "## Drift: harmful scores -0.5 logit" in out.output
    drift = json.loads(out.output[out.output.index("{") :])
    assert drift["draws"] == 2 and {"drift", "no_drift"} <= set(drift)
    assert not list(tmp_path.iterdir())  # decisions.json is only ever written whole
