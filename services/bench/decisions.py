"""`cascade bench decisions`: how good the certified decisions are — cost over the true
optimum, violation rate, fallback rate, drift detection — in a synthetic score world whose
optimum is known exactly. Writes ``<out>/decisions.md``, ``.json`` and ``.png``.

The core is :mod:`services.bench.decision_quality`; this module runs it, words it, plots it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import numpy as np

from cascade.config import get_settings
from feedback.costs import stage_costs
from models.progress import Progress
from services.bench.decision_quality import (
    DecisionsConfig,
    bench_truth,
    drift_case,
    run,
    targets,
    total_draws,
)
from services.bench.report import figure, write_report


def _table(title: str, rows: dict[str, dict[str, dict[str, float]]], fmt: str) -> list[str]:
    """One markdown table: a row per (measure, alpha), a column per n."""
    first = next(iter(next(iter(rows.values())).values()))
    ns = list(first)
    lines = [f"| {title} | alpha | " + " | ".join(ns) + " |", "|---|---|" + "---|" * len(ns)]
    for name, table in rows.items():
        for alpha, row in table.items():
            cells = " | ".join(format(row[n], fmt) if n in row else "" for n in ns)
            lines.append(f"| {name} | {alpha.removeprefix('alpha=')} | {cells} |")
    return lines


def drift_lines(drift: dict[str, Any]) -> list[str]:
    """The drift case's section: detection with drift, false alarms without."""
    dd, nd = drift["drift"], drift["no_drift"]
    return [
        f"## Drift: harmful scores {drift['shift_logit']} logit on both stages after a window "
        f"of {drift['window']} audit images (alpha {drift['alpha']}, guard level {drift['level']})",
        "",
        f"- with drift: alarm within {drift['labels']} new audit labels in "
        f"{100 * dd['detected_rate']:.1f} % of {drift['draws']} draws (median "
        f"{dd['median_labels_to_alarm']} labels; 90 % of draws within "
        f"{dd['labels_for_90_percent']}); at guard level 0.05: "
        f"{100 * dd['detected_rate_at_level_0.05']:.1f} %. The active set's true miss rate "
        f"exceeded alpha in {100 * dd['active_set_violates_rate']:.1f} % of the draws",
        f"- without drift: false alarms within {drift['labels']} labels in "
        f"{100 * nd['detected_rate']:.1f} % of draws (at level 0.05: "
        f"{100 * nd['detected_rate_at_level_0.05']:.1f} %)",
    ]


def markdown(r: dict[str, Any]) -> str:
    cfg, drift, stress = r["config"], r["drift"], r["misses_unpriced"]
    two = r["two_sided_n=10000"]
    lines = [
        "# Decision quality: the certified threshold set against the true optimum",
        "",
        f"World: the demo score world (5 % harmful, a tenth of them disguised), exact; costs "
        f"$/image {r['costs']}. delta = {cfg['delta']}, {cfg['draws']} audit draws per cell. "
        "Cost over optimum is the median of (true cost of the chosen set) / (true cost of the "
        "cheapest grid set whose true miss rate is <= alpha); violation = true miss rate > alpha.",
        "",
        "![cost over optimum](decisions.png)",
        "",
        "## With the configured costs (a miss priced as in the settings)",
        "",
        *_table(
            "measure",
            {
                "cost over optimum": r["cost_over_optimum"],
                "same, Bonferroni (old)": r["bonferroni_cost_over_optimum"],
                "information limit": r["information_limit_cost_over_optimum"],
                "same, previous window orders": r["previous_window"]["cost_over_optimum"],
            },
            ".3f",
        ),
        "",
        *_table("rate", {"violation": r["violation_rate"], "fallback": r["fallback_rate"]}, ".3f"),
        "",
        "## Misses unpriced (only the bound holds them back: the certificate's worst case)",
        "",
        *_table(
            "measure",
            {
                "cost over optimum": stress["cost_over_optimum"],
                "same, Bonferroni (old)": stress["bonferroni"],
                "information limit": stress["information_limit"],
                "violation": stress["violation_rate"],
                "fallback": stress["fallback_rate"],
            },
            ".3f",
        ),
        "",
        "Optimum's cost when only a share of alpha may be used (a certificate from n labels "
        f"cannot use all of it): configured costs {r['cost_when_using_share_of_alpha']}; "
        f"misses unpriced {stress['cost_when_using_share_of_alpha']}.",
        "",
        f"## Two-sided (false-block bound beta = {two['beta']}, n = 10,000)",
        "",
    ]
    for alpha, row in two.items():
        if alpha != "beta":
            lines.append(f"- {alpha}: {', '.join(f'{k} {v:.3f}' for k, v in row.items())}")
    lines += [
        "",
        *drift_lines(drift),
        "",
        "## Targets (measured, not asserted)",
        "",
        *[f"- {name}: {'met' if ok else 'NOT met'}" for name, ok in r["targets"].items()],
    ]
    return "\n".join(lines) + "\n"


def plot(r: dict[str, Any]) -> Any:
    fig, axes = figure(1, 2, figsize=(11, 4.5), sharey=True)
    panels = (
        ("configured costs", r["cost_over_optimum"], r["bonferroni_cost_over_optimum"],
         r["information_limit_cost_over_optimum"]),
        ("misses unpriced", r["misses_unpriced"]["cost_over_optimum"],
         r["misses_unpriced"]["bonferroni"], r["misses_unpriced"]["information_limit"]),
    )  # fmt: skip
    for ax, (title, new, old, limit) in zip(axes, panels, strict=True):
        labels = [f"{a.removeprefix('alpha=')}\n{n.removeprefix('n=')}"
                  for a, row in new.items() for n in row]  # fmt: skip
        x = np.arange(len(labels))
        for offset, (name, table) in zip((-0.27, 0.0, 0.27), (
            ("Bonferroni (old)", old), ("LTT, one sequence (new)", new), ("information limit", limit)
        ), strict=True):  # fmt: skip
            values = [v for row in table.values() for v in row.values()]
            ax.bar(x + offset, values, width=0.27, label=name)
        ax.axhline(1.10, color="grey", lw=0.8, ls="--")
        ax.axhline(1.05, color="grey", lw=0.8, ls=":")
        ax.set_xticks(x, labels, fontsize=8)
        ax.set_yscale("log")
        ax.set_title(f"cost over optimum ({title}); x: alpha / n")
    axes[0].legend(fontsize=8)
    return fig


@click.command()
@click.option("--out", type=click.Path(path_type=Path), default=Path("reports"), show_default=True)
@click.option("--draws", type=int, default=200, show_default=True, help="Audit draws per cell.")
@click.option("--drift-draws", type=int, default=200, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--only",
    type=click.Choice(["drift"]),
    default=None,
    help="Run only this case and print it (a few minutes); writes no report, so "
    "decisions.json always holds every key.",
)
def decisions(out: Path, draws: int, drift_draws: int, seed: int, only: str | None) -> None:
    """Decision quality: cost over the true optimum, violations, fallbacks, drift detection."""
    cfg = DecisionsConfig(draws=draws, drift_draws=drift_draws, seed=seed)
    costs = stage_costs(get_settings())
    if only == "drift":
        truth = bench_truth(costs)
        with Progress(
            total=2 * drift_draws, desc="bench decisions --only drift", unit="draws"
        ) as bar:
            drift = drift_case(truth, cfg, tick=bar.update)
        click.echo("\n".join(drift_lines(drift)))
        click.echo(json.dumps(drift, indent=2))
        return
    with Progress(total=total_draws(cfg), desc="bench decisions", unit="draws") as bar:
        result = run(costs, cfg, tick=bar.update)
    result["targets"] = targets(result)
    paths = write_report(out, "decisions", result, markdown(result), plot(result))
    click.echo(markdown(result))
    click.echo("wrote " + ", ".join(map(str, paths)))
