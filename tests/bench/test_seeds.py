"""`cascade bench seeds`' pure part: per-seed rows and their spread, on synthetic scores (the
command itself trains the demo models, minutes a seed: it is a benchmark, not a test)."""

import json

import numpy as np
import pytest

from feedback.costs import StageCosts
from services.bench.cascade_summary import resampled
from services.bench.policies import synthetic_scores
from services.bench.seeds import FIGURES, VARIANTS, across, markdown, plot, seed_entry

COSTS = StageCosts(stage1=1e-7, stage2=1.2e-6, human=0.05, miss=5.0, false_block=0.5)


def _entry(seed: int, blur: float) -> dict:
    """A "seed" whose screener is ``blur`` worse: its scores pulled toward 0.5."""
    s1, s2, y = synthetic_scores(6000, seed=seed)
    s1 = (1 - blur) * s1 + blur * 0.5
    probs = {1: s1, 2: s2}
    runs = {name: resampled(probs, y, COSTS, alpha=0.0025, delta=0.1, splits=4, **kw)
            for name, kw in VARIANTS.items()}  # fmt: skip
    return seed_entry(seed, runs, {"stage1": {"test_accuracy": 0.9}})


def test_seed_rows_and_their_spread() -> None:
    rows = [_entry(0, 0.0), _entry(1, 0.0), _entry(2, 0.6)]
    spread = across(rows)
    for name in VARIANTS:
        for key in FIGURES:
            shares = [r["met_share"][name][key] for r in rows]
            assert spread[name][key]["min"] == min(shares)
            assert spread[name][key]["max"] == max(shares)
            assert spread[name][key]["mean"] == pytest.approx(np.mean(shares))
    # the blurred screener decides less on the summary split than either sharp one
    first = [r["summary_split"]["stage1_decided_share"] for r in rows]
    assert first[2] < min(first[:2])
    for r in rows:
        assert r["summary_met"]["stage1_decided_share"] == (first[r["seed"]] >= 0.80)
    met = spread["summary_split_met_share"]
    assert met["stage1_decided_share"] == pytest.approx(np.mean([f >= 0.80 for f in first]))
    result = {"alpha": 0.0025, "splits": 4, "per_seed": rows, "across": spread}
    json.dumps(result)  # the report is JSON
    text = markdown(result)
    assert text.count("\n| ") >= len(rows) + len(VARIANTS)
    assert plot(result) is not None
