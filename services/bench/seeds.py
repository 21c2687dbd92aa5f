"""`cascade bench seeds`: is a recipe's figure the recipe's, or one training run's luck?

`cascade bench cascade` judges one pair of trained models. The same recipe trained with
another seed (initial weights, batch order, augmentation; the same data) once moved the share
of splits in which stage 1 decides >= 80 % of traffic from 64 % to 98 %, so one trained model
cannot tell two recipes apart near a target's line. This trains the demo recipe with several
training seeds (``models.demo.ensure_demo_models(train_seed=...)``, each under
``<work-dir>/seed-<k>``, reused while the recipe is unchanged), scores the same held-out
traffic-like set with each, and repeats `cascade bench cascade`'s target figures on each seed's
tune/measure splits, at the same prices (the default preset's, measured once in this run).

The report gives, per seed, the summary split's figures and the share of splits meeting each
target, and across seeds the least, mean and greatest of those shares: a recipe meets a target
robustly when its *least* share is high, not when one seed's is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import numpy as np

from cascade.config import get_settings
from services.bench.cascade_summary import TARGETS, resampled, target_met
from services.bench.cost_vs_miss import SPLITS, TARGET_SHARE, measured_costs
from services.bench.report import figure, table_lines, write_report

# The figures compared across seeds: the policy figures of `bench cascade`'s summary that
# depend on the models (the others are the traffic set's or the run's settings).
FIGURES = (
    "stage1_decided_share",
    "human_share",
    "compute_cost_ratio",
    "total_cost_ratio",
    "stage2_needed_share",
)
VARIANTS = {"plain": {}, "misses_priced": {"price_misses": True}}


def seed_entry(
    seed: int, runs: dict[str, dict[str, Any]], models: dict[str, Any]
) -> dict[str, Any]:
    """One seed's row: the summary split's figures (the first split of the plain variant, as in
    `bench cascade`'s summary) and, per variant, each target's met share over the splits."""
    first = runs["plain"]["per_split"][0]
    return {
        "seed": seed,
        "models": models,
        "summary_split": {k: first[k] for k in (*FIGURES, "certified")},
        "summary_met": {k: target_met(k, first[k]) for k in (*FIGURES, "certified")},
        "met_share": {
            name: {k: run["figures"][k]["met_share"] for k in FIGURES} for name, run in runs.items()
        },
        "mean": {
            name: {k: run["figures"][k]["mean"] for k in FIGURES} for name, run in runs.items()
        },
    }


def across(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """Least, mean and greatest over the seeds of each target's met share (per variant), and the
    share of seeds whose summary split meets it."""
    out: dict[str, Any] = {}
    for name in per_seed[0]["met_share"]:
        out[name] = {}
        for key in FIGURES:
            shares = np.array([s["met_share"][name][key] for s in per_seed])
            out[name][key] = {"min": float(shares.min()), "mean": float(shares.mean()),
                              "max": float(shares.max())}  # fmt: skip
    out["summary_split_met_share"] = {
        key: float(np.mean([bool(s["summary_met"][key]) for s in per_seed]))
        for key in (*FIGURES, "certified")
    }
    return out


def markdown(result: dict[str, Any]) -> str:
    seeds = result["per_seed"]
    lines = [
        "# Training seeds: the demo recipe's figures, seed by seed",
        "",
        f"{len(seeds)} training seeds of one recipe (the same data), each judged as `cascade "
        f"bench cascade` judges the demo models: alpha {result['alpha']:.4g}, "
        f"{result['splits']} tune/measure splits, prices from the default preset. "
        "Per seed: the summary split's figure, and in brackets the share of splits meeting "
        "the target.",
        "",
    ]
    cols = ["seed", *(f"{k} ({TARGETS[k][0]} {TARGETS[k][1]:g})" for k in FIGURES)]

    def cell(s: dict[str, Any], k: str) -> str:
        return f"{s['summary_split'][k]:.3f} ({s['met_share']['plain'][k]:.0%})"

    rows = [[str(s["seed"]), *(cell(s, k) for k in FIGURES)] for s in seeds]
    lines += table_lines(cols, rows)
    lines += ["", "Share of splits meeting each target, least / mean / greatest over the seeds:",
              ""]  # fmt: skip
    rows = [
        [name, *(f"{a[k]['min']:.0%} / {a[k]['mean']:.0%} / {a[k]['max']:.0%}" for k in FIGURES)]
        for name, a in result["across"].items()
        if name != "summary_split_met_share"
    ]
    lines += table_lines(["tuning", *FIGURES], rows)
    met = result["across"]["summary_split_met_share"]
    lines += ["", "Seeds whose summary split meets the target: "
              + ", ".join(f"{k} {v:.0%}" for k, v in met.items()), ""]  # fmt: skip
    return "\n".join(lines)


def plot(result: dict[str, Any]) -> Any:
    """Per target, each seed's share of splits meeting it; one panel per tuning variant."""
    seeds = result["per_seed"]
    names = list(seeds[0]["met_share"])
    fig, axes = figure(1, len(names), figsize=(5.5 * len(names), 4), sharey=True, squeeze=False)
    width = 0.8 / len(seeds)
    x = np.arange(len(FIGURES))
    for ax, name in zip(axes[0], names, strict=True):
        for i, s in enumerate(seeds):
            ax.bar(x + i * width - 0.4 + width / 2, [s["met_share"][name][k] for k in FIGURES],
                   width, label=f"seed {s['seed']}")  # fmt: skip
        ax.set_xticks(x, [f"{k}\n{TARGETS[k][0]} {TARGETS[k][1]:g}" for k in FIGURES],
                      fontsize=6)  # fmt: skip
        ax.set_ylim(0, 1.05)
        title = f"{name.replace('_', ' ')}: {len(seeds)} seeds, {result['splits']} splits each"
        ax.set_title(title, fontsize=9)
    axes[0][0].set_ylabel("share of splits meeting the target")
    axes[0][-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


@click.command()
@click.option("--out", type=click.Path(path_type=Path), default=Path("reports"), show_default=True)
@click.option("--seeds", "n_seeds", type=click.IntRange(min=1), default=3, show_default=True,
              help="Training seeds 0..N-1 (each trains both demo stages: about 9 minutes on a "
                   "fast 2-core machine, 25-30 on a slow one; reused while the recipe is "
                   "unchanged).")  # fmt: skip
@click.option(
    "--work-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Where each seed's models go (default: <CASCADE_VAR_DIR>/seeds).",
)
@click.option("--traffic-dir", type=click.Path(path_type=Path), default=None,
              help="Held-out traffic-like set (default: <CASCADE_VAR_DIR>/traffic; generated "
                   "on first use, as by `cascade bench cascade`).")  # fmt: skip
@click.option(
    "--splits",
    type=click.IntRange(min=1),
    default=SPLITS,
    show_default=True,
    help="Random tune/measure splits per seed.",
)
def seeds(out: Path, n_seeds: int, work_dir: Path | None, traffic_dir: Path | None,
          splits: int) -> None:  # fmt: skip
    """Train the demo recipe with several training seeds and judge each as `bench cascade`
    does: how much of a target's figure is the recipe's, how much one run's luck."""
    from models.demo import ensure_demo_models
    from models.traffic import (
        TRAFFIC_PREVALENCE,
        ensure_traffic_set,
        preset_seconds_per_image,
        score_traffic,
    )

    settings = get_settings()
    work_dir = work_dir or settings.var_dir / "seeds"
    traffic_dir = traffic_dir or settings.var_dir / "traffic"
    ensure_traffic_set(traffic_dir)
    click.echo("timing the default preset's models (the prices) ...")
    preset = preset_seconds_per_image("default")
    costs = measured_costs(settings, {s: preset[s]["seconds_per_image"] for s in (1, 2)})
    delta = settings.delta
    alpha = TARGET_SHARE * TRAFFIC_PREVALENCE  # as `bench cascade`'s default
    per_seed = []
    for seed in range(n_seeds):
        model_dir = work_dir / f"seed-{seed}"
        click.echo(f"seed {seed}: demo models under {model_dir} ...")
        trained = ensure_demo_models(model_dir, settings.var_dir / "data", train_seed=seed)
        scores, split = score_traffic(model_dir, traffic_dir)
        labels = split.labels.astype(np.float64)
        probs = {s: scores[s].probs for s in (1, 2)}
        runs = {
            name: resampled(probs, labels, costs, alpha=alpha, delta=delta, splits=splits, **kw)
            for name, kw in VARIANTS.items()
        }
        models = {f"stage{s}": {k: trained[f"stage{s}"][k] for k in
                                ("test_accuracy", "test_by_band", "max_confident_error_rate",
                                 "train_seconds")}
                  for s in (1, 2)}  # fmt: skip
        per_seed.append(seed_entry(seed, runs, models))
        first = per_seed[-1]["summary_split"]["stage1_decided_share"]
        share = per_seed[-1]["met_share"]["plain"]["stage1_decided_share"]
        click.echo(f"seed {seed}: stage 1 decides {first:.3f} on the summary split, >= 0.80 in "
                   f"{share:.0%} of splits")  # fmt: skip
    result = {
        "alpha": alpha,
        "delta": delta,
        "splits": splits,
        "seeds": list(range(n_seeds)),
        "costs": costs.as_dict(),
        "per_seed": per_seed,
        "across": across(per_seed),
        "source": f"demo recipe under {work_dir}, traffic set {traffic_dir}",
    }
    paths = write_report(out, "seeds", result, markdown(result), plot(result))
    click.echo(markdown(result))
    click.echo("wrote " + ", ".join(map(str, paths)))
