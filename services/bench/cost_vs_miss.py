"""`cascade bench cascade`: cost per image against miss rate — stage-1-only, stage-2-only and
the tuned cascade — written to ``<out>/cascade.md``, ``.json`` and ``.png``.

Scores come from the trained stage models on the held-out splits of the synthetic data set when
they exist (``--scores auto``), with compute cost from the engines' measured seconds per image;
otherwise from a synthetic score model (said so in the report).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click
import numpy as np

from cascade.config import Settings, get_settings
from feedback.costs import StageCosts, stage_costs
from services.bench.policies import (
    POLICIES,
    PolicyPoint,
    compare_policies,
    headline,
    synthetic_scores,
)
from services.bench.report import figure, write_report

ALPHAS = tuple(float(a) for a in np.round(np.geomspace(0.001, 0.05, 13), 5))


def model_scores(
    model_dir: Path, data_dir: Path, kind: str, splits: tuple[str, ...]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, float]]:
    """``(s1, s2, label, seconds per image by stage)`` from both trained stages."""
    from models.artifact import stage_dir
    from models.data import load_split
    from models.engines import load_engine

    scores, seconds, labels = [], {}, None
    for stage in (1, 2):
        engine = load_engine(stage_dir(model_dir, stage), kind)
        parts = [load_split(data_dir, split, engine.preprocess) for split in splits]
        x = np.concatenate([p.inputs(engine.preprocess) for p in parts])
        engine.predict(x[:8])  # warm-up, not timed
        start = time.perf_counter()
        probs = np.concatenate([engine.predict(x[i : i + 64]) for i in range(0, len(x), 64)])
        seconds[f"stage{stage}"] = (time.perf_counter() - start) / len(x)
        scores.append(np.clip(probs.astype(np.float64), 0.0, 1.0))
        labels = np.concatenate([p.labels for p in parts]).astype(np.float64)
    assert labels is not None
    return scores[0], scores[1], labels, seconds


def _source(settings: Settings, scores: str, model_dir: Path, data_dir: Path, kind: str,
            n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, StageCosts, str]:  # fmt: skip
    have_models = all((model_dir / f"stage{s}").is_dir() for s in (1, 2))
    if scores == "models" or (scores == "auto" and have_models):
        s1, s2, y, secs = model_scores(model_dir, data_dir, kind, ("val", "test"))
        prices = {stage: secs[stage] * settings.stage_price_per_hour(stage) / 3600.0
                  for stage in ("stage1", "stage2")}  # fmt: skip
        what = (
            f"trained models in {model_dir} ({kind}), val+test splits of {data_dir} "
            f"({len(y)} images); measured s/image: stage 1 {secs['stage1']:.2e}, "
            f"stage 2 {secs['stage2']:.2e}"
        )
        return s1, s2, y, stage_costs(settings, prices), what
    s1, s2, y = synthetic_scores(n, seed=seed)
    what = (
        f"synthetic score model (services.bench.policies.synthetic_scores, n={n}, prevalence 5%): "
        "no trained models found; run `cascade demo` first for real scores"
    )
    return s1, s2, y, stage_costs(settings), what


def plot(points: list[PolicyPoint], alpha: float) -> Any:
    fig, ax = figure(figsize=(7.5, 5))
    for policy, marker in zip(POLICIES, ("s", "^", "o"), strict=True):
        pts = sorted((p for p in points if p.policy == policy), key=lambda p: p.miss_rate)
        ax.plot([100 * p.miss_rate for p in pts], [p.operating_cost for p in pts],
                marker=marker, label=policy)  # fmt: skip
        for p in pts:
            if p.alpha == alpha:
                ax.annotate(f"α={alpha:g}", (100 * p.miss_rate, p.operating_cost), fontsize=8,
                            xytext=(4, 4), textcoords="offset points")  # fmt: skip
    ax.set_yscale("log")
    ax.set_xlabel("miss rate on held-out images (% of all images)")
    ax.set_ylabel("$ per image (compute + humans + false blocks)")
    ax.set_title("Cost per image vs miss rate (each point tuned at one alpha)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return fig


def markdown(result: dict[str, Any]) -> str:
    h = result["headline"]
    lines = [
        "# Cascade benchmark: cost per image vs miss rate",
        "",
        f"Scores: {result['source']}.",
        f"Costs ($/image): {result['costs']}. Guarantee: miss rate <= alpha with probability "
        f"{1 - result['delta']:.2f}; tuned on a random half, measured on the other half.",
        "",
        "![Pareto plot](cascade.png)",
        "",
        "| policy | alpha | certified | $/image (ops) | $/image compute | miss rate | false blocks "
        "| stage 1 | stage 2 | humans |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in result["points"]:
        lines.append(
            f"| {p['policy']} | {p['alpha']:g} | {'yes' if p['certified'] else 'FALLBACK'} "
            f"| {p['operating_cost']:.3g} | {p['compute_cost']:.3g} | {100 * p['miss_rate']:.3f}% "
            f"| {100 * p['false_block_rate']:.3f}% | {100 * p['stage1_share']:.1f}% "
            f"| {100 * p['stage2_share']:.1f}% | {100 * p['human_share']:.1f}% |"
        )
    lines += ["", f"## Target at alpha = {h['alpha']:g} (measured, not asserted)", ""]
    if h.get("cascade_matched") is None:
        lines.append("No cascade point reaches stage-2-only's miss rate: no comparison.")
    else:
        ref, best = h["stage2_only"], h["cascade_matched"]
        lines += [
            f"- stage-2-only: {ref['operating_cost']:.3g} $/image at miss rate "
            f"{100 * ref['miss_rate']:.3f}%",
            f"- cheapest cascade at an equal or lower miss rate (tuned at alpha "
            f"{best['alpha']:g}): {best['operating_cost']:.3g} $/image at "
            f"{100 * best['miss_rate']:.3f}%, stage 1 settles {100 * best['stage1_share']:.1f}%",
            f"- cost ratio {h['cost_ratio']:.3f} (target <= 0.125: "
            f"{'met' if h['cost_target_met'] else 'not met'}); compute-only ratio "
            f"{h['compute_cost_ratio']:.3f} ({'met' if h['compute_target_met'] else 'not met'})",
        ]
    return "\n".join(lines) + "\n"


@click.command()
@click.option("--out", type=click.Path(path_type=Path), default=Path("reports"), show_default=True)
@click.option("--scores", type=click.Choice(["auto", "models", "synthetic"]), default="auto",
              show_default=True, help="Where scores come from (auto: models when trained).")  # fmt: skip
@click.option("--model-dir", type=click.Path(path_type=Path), default=None,
              help="Trained stages (default: CASCADE_MODEL_DIR).")  # fmt: skip
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              help="Synthetic data set (default: <CASCADE_VAR_DIR>/data).")  # fmt: skip
@click.option("--engine", "kind", default="onnx", show_default=True)
@click.option("--alpha", type=float, default=None, help="Headline alpha (default: CASCADE_ALPHA).")
@click.option("--delta", type=float, default=None, help="Default: CASCADE_DELTA.")
@click.option("--n", type=int, default=200_000, show_default=True, help="Synthetic images.")
@click.option("--seed", type=int, default=0, show_default=True)
def cascade(out: Path, scores: str, model_dir: Path | None, data_dir: Path | None, kind: str,
            alpha: float | None, delta: float | None, n: int, seed: int) -> None:  # fmt: skip
    """Cost per image vs miss rate: stage-1-only, stage-2-only and the tuned cascade."""
    settings = get_settings()
    alpha = settings.alpha if alpha is None else alpha
    delta = settings.delta if delta is None else delta
    model_dir = model_dir or settings.model_dir
    data_dir = data_dir or settings.var_dir / "data"
    s1, s2, y, costs, source = _source(settings, scores, model_dir, data_dir, kind, n, seed)
    alphas = tuple(sorted({*ALPHAS, alpha}))
    points = compare_policies(s1, s2, y, costs, alphas=alphas, delta=delta, seed=seed)
    result = {
        "source": source,
        "costs": costs.as_dict(),
        "delta": delta,
        "points": [p.as_dict() for p in points],
        "headline": headline(points, alpha),
    }
    paths = write_report(out, "cascade", result, markdown(result), plot(points, alpha), dpi=120)
    click.echo(markdown(result))
    click.echo("wrote " + ", ".join(map(str, paths)))
