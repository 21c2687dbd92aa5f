"""`cascade bench loop`: the demo's feedback loop as a rate, on the models' own scores.

One `cascade demo` is one draw of its loop (8,000 images under the initial thresholds, their
audit labels, a retune, a second round) and takes minutes; its verdict swings with a handful of
labels. This replays the loop many times in seconds, on the traffic-like set's real scores
(`models.traffic.score_traffic`), with the demo's defaults: 5 % prevalence, 30 % audited, two
moderators and the admins each ``accuracy`` right, alpha 0.01, the settings' costs (a miss
$5). Each run draws round 1 from the set, labels its audit sample under the review rules of
``cascade.review`` (moderators who agree; an admin confirms an agreed dispute of the automatic
decision; over a split, one ruling against the automatic decision is final at margin 1 and
waits for a second admin at margin 2, the default ``audit_dispute_margin``), retunes with
``feedback.optimise`` as ``feedback.retune`` does (the initial set in force: the retune keeps it
when the new one would allow more without the audit labels showing it cheaper,
``feedback.incumbent``), and measures the initial and the retuned set on the same images the
run did not use. Both margins see the same draws (paired), and so does the optimiser's own
pick, the set a retune without that rule would have put in force (``without_rule``).

What it leaves out: the stack itself (`cascade demo` runs it), a second round's own sampling
noise (both sets are measured on the same ~12,000 images), and escalated items' labels (the
retune reads only the audit sample).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np
import numpy.typing as npt

from cascade.config import get_settings
from cascade.policy import ALLOW_CODE, BLOCK_CODE, DEFAULT_THRESHOLDS, ThresholdSet, route_arrays
from feedback.costs import StageCosts, stage_costs
from feedback.estimate import per_image
from feedback.incumbent import SWITCH_SE
from feedback.optimise import TIE_BREAK_SE, optimise
from feedback.sample import AuditSample
from services.bench.report import figure, table_lines, write_report

Array = npt.NDArray[np.float64]
MARGINS = (1, 2)


def audit_labels(y: Array, auto: Array, right: npt.NDArray[np.bool_], margin: int) -> Array:
    """The final label of each audited image under the review rules (1 = harmful).

    ``auto``: the automatic decision (0 allow, 1 block, NaN when the cascade escalated it);
    ``right[k]``: whether moderator 1, moderator 2, admin 1 and admin 2 get the image right.
    """
    m1, m2, a1, a2 = (np.where(right[k], y, 1 - y) for k in range(4))
    disputed = ~np.isnan(auto)
    # Moderators who agree against the automatic decision: an admin confirms or keeps it.
    agreed = np.where(disputed & (m1 != auto), np.where(a1 == m1, m1, auto), m1)
    # A split: the admin's ruling, or (margin 2) a second admin's when it disputes the cascade.
    split = np.where(disputed & (a1 != auto), a2, a1) if margin >= 2 else a1
    return np.where(m1 == m2, agreed, split)


def measure(
    ts: ThresholdSet, s1: Array, s2: Array, y: Array, costs: StageCosts
) -> dict[str, float]:
    """Where ``ts`` sends these images and what humans and errors cost per image (the terms
    ``feedback.estimate`` averages, here over labels that are the truth)."""
    terms = {
        k: float(v.mean()) for k, v in per_image(AuditSample.of(s1, s2, y, 1.0), ts, costs).items()
    }
    compute = costs.stage1 + costs.stage2 * terms["reach_stage2"]
    return {
        "human_share": terms["human_share"],
        "stage1_decided_share": terms["stage1_share"],
        "compute": compute,
        "miss_rate": terms["miss_rate"],
        "false_block_rate": terms["false_block_rate"],
        "humans_and_errors": terms["cost"] - compute,
    }


@dataclass(frozen=True)
class LoopConfig:
    round_images: int = 8000
    audit_rate: float = 0.3
    accuracy: float = 0.98
    alpha: float = 0.01
    delta: float = 0.05
    tie_break_se: float = TIE_BREAK_SE
    switch_se: float = SWITCH_SE


def one_run(
    s1: Array, s2: Array, y: Array, costs: StageCosts, cfg: LoopConfig, seed: int
) -> dict[int, dict[str, Any]]:
    """One loop, under every margin, on the same draws."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    used, rest = order[: cfg.round_images], order[cfg.round_images :]
    r1, r2, ry = s1[used], s2[used], y[used]
    audited = rng.random(len(used)) < cfg.audit_rate
    final, _ = route_arrays(r1, r2, DEFAULT_THRESHOLDS)
    auto = np.where(final == ALLOW_CODE, 0.0, np.where(final == BLOCK_CODE, 1.0, np.nan))
    right = rng.random((4, len(used))) < cfg.accuracy
    before = measure(DEFAULT_THRESHOLDS, s1[rest], s2[rest], y[rest], costs)
    out = {}
    for margin in MARGINS:
        label = audit_labels(ry, auto, right, margin)
        sample = AuditSample.of(r1[audited], r2[audited], label[audited], cfg.audit_rate)
        opt = optimise(sample, costs, alpha=cfg.alpha, delta=cfg.delta,
                       tie_break_se=cfg.tie_break_se, incumbent=DEFAULT_THRESHOLDS,
                       switch_se=cfg.switch_se)  # fmt: skip
        after = (
            measure(opt.thresholds, s1[rest], s2[rest], y[rest], costs) if opt.certified else before
        )
        # The optimiser's own pick, as a retune without the rule would have put in force.
        fresh = after
        if opt.comparison is not None and opt.kept:
            fresh = measure(opt.comparison.candidate, s1[rest], s2[rest], y[rest], costs)
        wrong = audited & (label != ry)
        out[margin] = {
            "certified": bool(opt.certified),
            "kept": bool(opt.kept),
            "fresh": fresh,
            "phantom_misses": int(np.sum(wrong & (ry == 0) & (auto == 0))),
            "wrong_labels": int(np.sum(wrong)),
            "before": before,
            "after": after,
        }
    return out


def summarise(runs: list[dict[int, dict[str, Any]]]) -> dict[str, Any]:
    """Per margin: means, and the share of runs in which each figure fell after the retune."""
    result: dict[str, Any] = {}
    for margin in MARGINS:
        rows = [r[margin] for r in runs]

        def col(part: str, key: str, rows: list[dict[str, Any]] = rows) -> Array:
            return np.array([r[part][key] for r in rows])

        fell = {k: float(np.mean(col("after", k) < col("before", k)))
                for k in ("human_share", "compute", "humans_and_errors")}  # fmt: skip
        both = (col("after", "human_share") < col("before", "human_share")) & (
            col("after", "compute") < col("before", "compute")
        )
        ratio = col("after", "humans_and_errors") / col("before", "humans_and_errors")
        fresh = col("fresh", "humans_and_errors") / col("before", "humans_and_errors")
        result[str(margin)] = {
            "phantom_misses_per_round": float(np.mean([r["phantom_misses"] for r in rows])),
            "wrong_labels_per_round": float(np.mean([r["wrong_labels"] for r in rows])),
            "certified_share": float(np.mean([r["certified"] for r in rows])),
            "kept_share": float(np.mean([r["kept"] for r in rows])),
            "before": {k: float(col("before", k).mean()) for k in rows[0]["before"]},
            "after": {k: float(col("after", k).mean()) for k in rows[0]["after"]},
            "fell_share": fell | {"human_share_and_compute": float(np.mean(both))},
            "rose_share": {"humans_and_errors": float(np.mean(ratio > 1))},
            "without_rule": {
                "after": {k: float(col("fresh", k).mean()) for k in rows[0]["fresh"]},
                "fell_share": {"humans_and_errors": float(np.mean(fresh < 1))},
                "rose_share": {"humans_and_errors": float(np.mean(fresh > 1))},
                "humans_and_errors_ratio": {
                    "median": float(np.median(fresh)),
                    "mean": float(np.mean(fresh)),
                },
            },
            "humans_and_errors_ratio": {
                "median": float(np.median(ratio)),
                "p10": float(np.quantile(ratio, 0.1)),
                "p90": float(np.quantile(ratio, 0.9)),
                "mean": float(np.mean(ratio)),
            },
            "ratios": ratio.tolist(),
        }
    return result


def simulate(
    s1: Array, s2: Array, y: Array, costs: StageCosts, cfg: LoopConfig, runs: int, seed: int = 0,
    tick: Callable[[], None] | None = None,
) -> dict[str, Any]:  # fmt: skip
    out = []
    for r in range(runs):
        out.append(one_run(s1, s2, y, costs, cfg, seed * 1_000_003 + r))
        if tick:
            tick()
    return summarise(out)


def markdown(result: dict[str, Any]) -> str:
    cfg = result["config"]
    lines = [
        "# The demo's loop as a rate (`cascade bench loop`)",
        "",
        f"{result['runs']} runs; each: {cfg['round_images']} images under the initial "
        f"thresholds, {cfg['audit_rate']:.0%} audited, moderators and admins "
        f"{cfg['accuracy']:.0%} right, a retune at alpha {cfg['alpha']:g}, both sets measured "
        "on the images the run did not use. Margin: votes against an automatic decision must "
        "lead by this many before an audit error counts (`CASCADE_AUDIT_DISPUTE_MARGIN`).",
        "",
    ]
    rows = []
    for margin, m in result["margins"].items():
        b, a, f = m["before"], m["after"], m["fell_share"]
        rows.append([
            margin, f"{m['phantom_misses_per_round']:.2f}", f"{m['certified_share']:.0%}",
            f"{b['human_share']:.2%} → {a['human_share']:.2%}", f"{f['human_share']:.0%}",
            f"{b['stage1_decided_share']:.1%} → {a['stage1_decided_share']:.1%}",
            f"{f['compute']:.0%}", f"{m['humans_and_errors_ratio']['median']:.2f}",
            f"{f['humans_and_errors']:.0%}",
            f"{b['miss_rate']:.3%} → {a['miss_rate']:.3%}", f"{m['kept_share']:.0%}",
            f"{m['rose_share']['humans_and_errors']:.0%}",
        ])  # fmt: skip
    lines += table_lines(
        ["margin", "phantom misses a round", "certified", "humans", "humans fell in",
         "stage 1 decides", "compute fell in", "humans + errors: median after/before",
         "humans + errors fell in", "misses", "set in force kept", "humans + errors rose in"],
        rows,
    )  # fmt: skip
    lines += [
        "",
        "The retune's rule (a new set that would allow more automatically than the set in force "
        f"replaces it only when the audit labels show it cheaper by {cfg['switch_se']:g} "
        f"standard error{'' if cfg['switch_se'] == 1 else 's'}; a tighter one always does), "
        "against the optimiser's own pick on the same draws (humans + errors, after / before):",
        "",
    ]
    rows = []
    for margin, m in result["margins"].items():
        w, r = m["without_rule"], m["humans_and_errors_ratio"]
        rows.append([
            margin, f"{r['mean']:.3f}", f"{m['fell_share']['humans_and_errors']:.0%}",
            f"{m['rose_share']['humans_and_errors']:.0%}",
            f"{w['humans_and_errors_ratio']['mean']:.3f}",
            f"{w['fell_share']['humans_and_errors']:.0%}",
            f"{w['rose_share']['humans_and_errors']:.0%}",
        ])  # fmt: skip
    lines += table_lines(
        ["margin", "with the rule: mean", "fell in", "rose in", "without: mean", "fell in",
         "rose in"],
        rows,
    )  # fmt: skip
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any]) -> Any:
    fig, ax = figure(figsize=(7, 4))
    for margin, m in result["margins"].items():
        ax.hist(np.log2(m["ratios"]), bins=30, alpha=0.5, label=f"margin {margin}")
    ax.axvline(0, color="k", lw=1)
    ax.set_xlabel("log2(humans + errors after / before the retune)")
    ax.set_ylabel("runs")
    ax.set_title("The demo's loop, replayed: below 0 the retune paid")
    ax.legend()
    return fig


@click.command()
@click.option("--out", type=click.Path(path_type=Path), default=Path("reports"), show_default=True)
@click.option("--model-dir", type=click.Path(path_type=Path), default=None,
              help="Trained stages (default: CASCADE_MODEL_DIR).")  # fmt: skip
@click.option("--traffic-dir", type=click.Path(path_type=Path), default=None,
              help="Held-out traffic-like set (default: <CASCADE_VAR_DIR>/traffic; generated "
                   "on first use).")  # fmt: skip
@click.option("--runs", type=click.IntRange(min=2), default=100, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--tie-break-se", type=click.FloatRange(min=0.0), default=TIE_BREAK_SE,
              show_default=True, help="The retune's tie-break (CASCADE_TIE_BREAK_SE; 0: the "
              "cheapest certified set as estimated).")  # fmt: skip
@click.option("--switch-se", type=click.FloatRange(min=0.0), default=SWITCH_SE,
              show_default=True, help="The retune keeps the set in force unless the labels show "
              "the new one cheaper by this many standard errors (CASCADE_SWITCH_SE).")  # fmt: skip
def loop(
    out: Path, model_dir: Path | None, traffic_dir: Path | None, runs: int, seed: int,
    tie_break_se: float, switch_se: float,
) -> None:  # fmt: skip
    """The demo's label-retune loop replayed many times on the models' scores: how often the
    retune lowers humans, compute, and humans + errors, under each review margin."""
    from models.progress import Progress
    from models.traffic import ensure_traffic_set, score_traffic

    settings = get_settings()
    model_dir = model_dir or settings.model_dir
    traffic_dir = traffic_dir or settings.var_dir / "traffic"
    if not all((model_dir / f"stage{s}" / "meta.json").is_file() for s in (1, 2)):
        raise click.ClickException(f"no trained models under {model_dir}: run `cascade demo`")
    ensure_traffic_set(traffic_dir)
    click.echo("scoring the traffic-like set with both stages ...")
    scores, split = score_traffic(model_dir, traffic_dir)
    cfg = LoopConfig(tie_break_se=tie_break_se, switch_se=switch_se)
    costs = stage_costs(settings)
    with Progress(total=runs, desc="bench loop", unit="run") as bar:
        margins = simulate(scores[1].probs, scores[2].probs, split.labels.astype(np.float64),
                           costs, cfg, runs, seed, tick=bar.update)  # fmt: skip
    result = {"runs": runs, "seed": seed, "config": cfg.__dict__, "costs": costs.as_dict(),
              "margins": margins}  # fmt: skip
    text = markdown(result)
    paths = write_report(out, "loop", result, text, plot(result))
    click.echo(text)
    click.echo("wrote " + ", ".join(map(str, paths)))
