"""`cascade bench cascade`: does the cascade pay for itself?

On one held-out, traffic-like set (``models.traffic``: at least 10,000 images at a realistic
prevalence, never seen in training) both trained stages score every image. Three policies are
tuned at the same alpha on a random half and measured on the other half: stage 1 + humans,
stage 2 on every image + humans, and the cascade. ``summary`` holds the restated target of
issue 11 (keys named there); the frontier over several alphas, a per-band table and a
reliability diagram per stage come with it. ``resampled`` repeats the target's figures on many
random tune/measure splits: one split's total cost rests on a handful of errors.

Compute prices are measured in the same run, the same way for every model (ONNX Runtime FP32 on
this machine, one batch size): the default preset's two models (the ratio a deployment would
pay; random weights, speed does not depend on them) price the policies; the demo models' own
ratio is stated beside it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import numpy as np

from cascade.config import Settings, get_settings
from feedback.costs import StageCosts, stage_costs
from services.bench.cascade_summary import (
    at_alpha,
    band_table,
    plot,
    resampled,
    summary,
    target_met,
)
from services.bench.markdown_cascade import markdown
from services.bench.policies import compare_policies, headline, held_out_half
from services.bench.report import write_report

ALPHA_SHARES = (0.02, 0.05, 0.1, 0.2, 0.5)  # the frontier's alphas, as shares of the prevalence
TARGET_SHARE = 0.05  # the target's alpha: at most one harmful image in twenty let through
SPLITS = 50  # tune/measure splits repeated at the target's alpha (well under a second each)


def measured_costs(settings: Settings, seconds: dict[int, float]) -> StageCosts:
    """The settings' costs with each stage's compute priced from its measured seconds/image."""
    dollars = {f"stage{s}": sec * settings.stage_price_per_hour(f"stage{s}") / 3600.0
               for s, sec in seconds.items()}  # fmt: skip
    return stage_costs(settings, dollars)


def _demo_ratio(demo: StageCosts, stage1_share: float) -> float:
    """The cascade's compute against stage 2 on every image, at the demo models' prices."""
    return (demo.stage1 + demo.stage2 * (1.0 - stage1_share)) / demo.stage2


@click.command()
@click.option("--out", type=click.Path(path_type=Path), default=Path("reports"), show_default=True)
@click.option("--model-dir", type=click.Path(path_type=Path), default=None,
              help="Trained stages (default: CASCADE_MODEL_DIR; the demo models are built when "
                   "there are none).")  # fmt: skip
@click.option("--traffic-dir", type=click.Path(path_type=Path), default=None,
              help="Held-out traffic-like set (default: <CASCADE_VAR_DIR>/traffic; generated "
                   "on first use).")  # fmt: skip
@click.option("--n", type=click.IntRange(min=100), default=20_000, show_default=True,
              help="Images in the held-out set (the target needs at least 10,000).")  # fmt: skip
@click.option("--prevalence", type=click.FloatRange(0.001, 0.5), default=0.05, show_default=True,
              help="Share of harmful images in the held-out set.")  # fmt: skip
@click.option("--alpha", type=float, default=None,
              help=f"Per-image miss-rate bound (default: {TARGET_SHARE:g} x the prevalence).")  # fmt: skip
@click.option("--delta", type=float, default=None, help="Default: CASCADE_DELTA.")
@click.option("--engine", "kind", default="onnx", show_default=True)
@click.option("--price-preset", type=click.Choice(["default", "demo"]), default="default",
              show_default=True, help="Whose measured speeds price the policies.")  # fmt: skip
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--splits", type=click.IntRange(min=1), default=SPLITS, show_default=True,
              help="Random tune/measure splits the target's figures are repeated on (the "
                   "summary is the first; the report gives each figure's mean, range and the "
                   "share of splits that meet its target).")  # fmt: skip
def cascade(
    out: Path, model_dir: Path | None, traffic_dir: Path | None, n: int, prevalence: float,
    alpha: float | None, delta: float | None, kind: str, price_preset: str, seed: int,
    splits: int,
) -> None:  # fmt: skip
    """Stage-1-only, stage-2-on-all and the tuned cascade on a held-out traffic-like set:
    miss and false-block rates, human share, compute and total $/image (issue 11's target)."""
    from models.demo import ensure_demo_models
    from models.traffic import ensure_traffic_set, preset_seconds_per_image, score_traffic

    settings = get_settings()
    delta = settings.delta if delta is None else delta
    alpha = TARGET_SHARE * prevalence if alpha is None else alpha
    model_dir = model_dir or settings.model_dir
    traffic_dir = traffic_dir or settings.var_dir / "traffic"
    if not all((model_dir / f"stage{s}" / "meta.json").is_file() for s in (1, 2)):
        click.echo(f"no models under {model_dir}: building the demo models first")
        ensure_demo_models(model_dir, settings.var_dir / "data")
    click.echo(f"held-out traffic-like set: {traffic_dir} ({n} images, prevalence {prevalence:g})")
    ensure_traffic_set(traffic_dir, n=n, prevalence=prevalence)
    click.echo("scoring it with both stages, timing them ...")
    scores, split = score_traffic(model_dir, traffic_dir, kind)
    click.echo(f"timing the {price_preset} preset's models ...")
    preset = preset_seconds_per_image(price_preset)
    costs = measured_costs(settings, {s: preset[s]["seconds_per_image"] for s in (1, 2)})
    demo = measured_costs(settings, {s: scores[s].seconds_per_image for s in (1, 2)})
    probs = {s: scores[s].probs for s in (1, 2)}
    labels, bands = split.labels.astype(np.float64), split.bands
    alphas = tuple(sorted({*(share * prevalence for share in ALPHA_SHARES), alpha}))
    points = compare_policies(probs[1], probs[2], labels, costs, alphas=alphas, delta=delta,
                              seed=seed)  # fmt: skip
    click.echo(f"repeating the target's figures on {splits} random tune/measure splits ...")
    again = resampled(probs, labels, costs, alpha=alpha, delta=delta, splits=splits, seed=seed)
    click.echo("... with the one-standard-error tie-break, and with misses priced in tuning ...")
    variants = {
        "tie_break": resampled(probs, labels, costs, alpha=alpha, delta=delta, splits=splits,
                               seed=seed, tie_break_se=1.0),
        "misses_priced": resampled(probs, labels, costs, alpha=alpha, delta=delta,
                                   splits=splits, seed=seed, price_misses=True),
    }  # fmt: skip
    result = report(settings, points, alpha, delta, probs, labels, bands, seed) | {
        "resampled": again,
        "resampled_variants": variants,
        "source": f"{kind} scores of {model_dir} on {len(labels)} held-out images in "
        f"{traffic_dir}; prices from the {price_preset} preset's measured speeds",
        "prices": _prices(preset, scores, costs, demo, at_alpha(points, alpha)),
    }
    names = {s: f"{scores[s].model}@{scores[s].size}" for s in (1, 2)}
    fig = plot(points, alpha, probs, split.labels, names, again)
    paths = write_report(out, "cascade", result, markdown(result), fig, dpi=110)
    click.echo(markdown(result))
    click.echo("wrote " + ", ".join(map(str, paths)))


def report(
    settings: Settings, points: list[Any], alpha: float, delta: float,
    probs: dict[int, np.ndarray], labels: np.ndarray, bands: np.ndarray, seed: int,
) -> dict[str, Any]:  # fmt: skip
    """The JSON report, less where the scores and prices came from."""
    summ = summary(points, alpha, probs, labels, bands)
    cascade_point = at_alpha(points, alpha)["cascade"]
    return {
        "summary": summ,
        "targets": {k: target_met(k, v) for k, v in summ.items()},
        "delta": delta,
        "points": [p.as_dict() for p in points],
        "headline": headline(points, alpha),
        "bands": band_table(
            probs, labels, bands, held_out_half(len(labels), seed), cascade_point.thresholds
        ),
        "band_shares": {b: float(np.mean(bands == b)) for b in sorted(set(bands.tolist()))},
    }


def _prices(preset: dict[int, dict[str, Any]], scores: Any, costs: StageCosts, demo: StageCosts,
            at: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    return {
        "priced_by": {f"stage{s}": preset[s] for s in (1, 2)},
        "demo_models": {
            f"stage{s}": {
                "model": scores[s].model,
                "size": scores[s].size,
                "seconds_per_image": scores[s].seconds_per_image,
            }
            for s in (1, 2)
        },
        "costs": costs.as_dict(),
        "demo_costs": demo.as_dict(),
        "compute_cost_ratio_demo_prices": _demo_ratio(demo, at["cascade"].stage1_share),
    }
