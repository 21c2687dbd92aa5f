"""The decisions benchmark's pure core: how close the certified set comes to the true optimum,
how often its guarantee fails, how often it falls back, and whether drift is caught.

A :class:`feedback.simulate.ScoreWorld` gives the truth exactly (:mod:`feedback.oracle`). For
each cell (audit size ``n`` × ``alpha``) the benchmark draws ``draws`` audit samples, runs the
optimiser on each, and measures the chosen set *in the world*: cost over the true optimum
(median), violation (true miss rate above alpha), fallback. Two yardsticks beside it: the old
design (Bonferroni over the ``t2_lo`` columns, fixed sequence along ``t1_lo``) on the same
draws, and the information limit (the true frontier tested on the whole sample: what no valid
certificate from ``n`` labels beats on average).

The drift case: an active set certified on an audit window of ``drift_n`` images, then live
traffic whose harmful images score ``drift_shift`` logits lower on both stages; the guard
(:func:`feedback.drift.watch`) watches up to ``drift_labels`` new audit labels. Detection is
the share of draws in which it fires within them; the same without drift gives its false-alarm
rate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import numpy as np

from cascade.policy import ThresholdSet
from feedback.bound import miss_pvalues
from feedback.costs import StageCosts
from feedback.drift import DRIFT_LEVEL, watch
from feedback.optimise import cheapest, optimise
from feedback.oracle import WorldTruth
from feedback.sample import AuditSample, equal_probability_subsample
from feedback.simulate import ScoreWorld, demo_world
from feedback.tables import ThresholdGrid, miss_envelope

Tick = Callable[[], None]


@dataclass(frozen=True)
class DecisionsConfig:
    """What to run. The defaults are the issue's cells."""

    ns: tuple[int, ...] = (2000, 10_000, 50_000)
    alphas: tuple[float, ...] = (0.001, 0.003)
    delta: float = 0.1
    draws: int = 200
    drift_n: int = 50_000
    drift_alpha: float = 0.001
    drift_shift: float = -0.5
    drift_labels: int = 2000
    drift_draws: int = 200
    drift_level: float = DRIFT_LEVEL
    beta: float = 0.001  # the two-sided cell's false-block bound
    seed: int = 0

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def bonferroni(
    sample: AuditSample, grid: ThresholdGrid, costs: StageCosts, alpha: float, delta: float
) -> ThresholdSet:
    """The design this replaces: a fixed sequence along ``t1_lo`` per ``t2_lo`` column at level
    ``delta / columns``, on the whole sample; cheapest certified set, else allow nothing."""
    thin = equal_probability_subsample(sample)
    n_lo, v = grid.n_lo, grid.values
    _, harmful = grid.cells(thin, np.ones(thin.n))
    passed = miss_pvalues(np.rint(miss_envelope(harmful, n_lo)), thin.n, alpha) <= delta / n_lo
    allowed = np.logical_and.accumulate(passed, axis=0)
    if not allowed.any():
        allowed[0, 0] = True
    i, j, k, m = cheapest(sample, grid, costs, allowed)
    return ThresholdSet(float(v[i]), float(v[j]), float(v[k]), float(v[m]))


def _cell(
    truth: WorldTruth, n: int, alpha: float, cfg: DecisionsConfig, beta: float | None = None,
    tick: Tick | None = None, previous: bool = False,
) -> dict[str, float]:  # fmt: skip
    """``draws`` audit samples of ``n`` images at ``alpha``: medians and rates. ``previous``:
    each draw also gets an earlier window of ``n`` images to order on."""
    best = truth.optimum(alpha, beta)[1].cost
    rng = np.random.default_rng([cfg.seed, n, round(alpha * 1e6)])
    ratio, old, viol, fb_viol, fallback = [], [], 0, 0, 0
    for d in range(cfg.draws):
        sample = truth.world.audit(rng, n)
        earlier = truth.world.audit(rng, n) if previous else None
        opt = optimise(sample, truth.costs, alpha=alpha, delta=cfg.delta, beta=beta,
                       grid=truth.grid, order_sample=earlier, seed=d)  # fmt: skip
        got = truth.of(opt.thresholds)
        ratio.append(got.cost / best)
        viol += got.miss_rate > alpha
        fb_viol += beta is not None and got.false_block_rate > beta
        fallback += opt.fallback
        if tick:
            tick()
        if beta is None and not previous:
            old.append(
                truth.of(bonferroni(sample, truth.grid, truth.costs, alpha, cfg.delta)).cost / best
            )
    out = {
        "cost_over_optimum": float(np.median(ratio)),
        "violation_rate": viol / cfg.draws,
        "fallback_rate": fallback / cfg.draws,
    }
    if beta is None and not previous:
        out |= {"bonferroni": float(np.median(old)),
                "information_limit": truth.median_limit(n, alpha, cfg.delta)}  # fmt: skip
    if beta is not None:
        out["false_block_violation_rate"] = fb_viol / cfg.draws
    return out


Table = dict[str, dict[str, float]]


def cells(
    truth: WorldTruth, cfg: DecisionsConfig, tick: Tick | None = None, previous: bool = False
) -> dict[str, Table]:
    """Every cell, as ``{key: {"alpha=…": {"n=…": value}}}`` for each measured key."""
    out: dict[str, Table] = {}
    for alpha in cfg.alphas:
        for n in cfg.ns:
            for key, value in _cell(truth, n, alpha, cfg, tick=tick, previous=previous).items():
                out.setdefault(key, {}).setdefault(f"alpha={alpha:g}", {})[f"n={n}"] = value
    return out


def _alarm_times(
    truth: WorldTruth, live: ScoreWorld, cfg: DecisionsConfig, rng: np.random.Generator,
    d: int, levels: tuple[float, ...],
) -> tuple[list[int | None], bool]:  # fmt: skip
    """One draw: certify on a window, watch ``2 × drift_labels`` of live traffic at each
    level; the labels seen at each alarm (None: none), and whether the set broke alpha live."""
    window = truth.world.audit(rng, cfg.drift_n)
    opt = optimise(window, truth.costs, alpha=cfg.drift_alpha, delta=cfg.delta,
                   grid=truth.grid, seed=d)  # fmt: skip
    new = live.audit(rng, 2 * cfg.drift_labels)
    times = [watch(window, new, opt.thresholds, alpha=cfg.drift_alpha, level=level,
                   seed=d).fired_at for level in levels]  # fmt: skip
    broken = WorldTruth(live, truth.grid, truth.costs).of(opt.thresholds).miss_rate
    return times, broken > cfg.drift_alpha


def _finite(x: float) -> float | None:
    """JSON has no infinity: "never within the watch" is None."""
    return float(x) if np.isfinite(x) else None


def drift_case(
    truth: WorldTruth, cfg: DecisionsConfig, tick: Tick | None = None
) -> dict[str, object]:
    """Detection within ``drift_labels`` new labels with and without the shift, at the
    configured guard level and at 0.05 (the trade-off), and the labels 90 % of draws need."""
    levels = (cfg.drift_level, 0.05)
    out: dict[str, object] = {"shift_logit": cfg.drift_shift, "window": cfg.drift_n,
                              "alpha": cfg.drift_alpha, "labels": cfg.drift_labels,
                              "draws": cfg.drift_draws, "level": cfg.drift_level}  # fmt: skip
    lives = (("drift", truth.world.shifted(harmful_logit=cfg.drift_shift)),
             ("no_drift", truth.world))  # fmt: skip
    for name, live in lives:
        rng = np.random.default_rng([cfg.seed, 0xD71F, name == "drift"])
        fired: list[list[int | None]] = []
        violated = 0
        for d in range(cfg.drift_draws):
            times, broken = _alarm_times(truth, live, cfg, rng, d, levels)
            fired.append(times)
            violated += broken
            if tick:
                tick()
        at = np.array([[np.inf if t is None else t for t in row] for row in fired])
        within = at <= cfg.drift_labels
        out[name] = {
            "detected_rate": float(within[:, 0].mean()),
            "median_labels_to_alarm": _finite(np.median(at[:, 0])),
            "labels_for_90_percent": _finite(np.quantile(at[:, 0], 0.9)),
            "detected_rate_at_level_0.05": float(within[:, 1].mean()),
            "active_set_violates_rate": violated / cfg.drift_draws,
            "watched_labels": 2 * cfg.drift_labels,
        }
    return out


def total_draws(cfg: DecisionsConfig) -> int:
    """How many optimiser runs :func:`run` makes (for progress)."""
    cells_ = len(cfg.ns) * len(cfg.alphas) * cfg.draws
    return 3 * cells_ + len(cfg.alphas) * cfg.draws + 2 * cfg.drift_draws


def budget_curve(truth: WorldTruth, alphas: tuple[float, ...]) -> Table:
    """The optimum's cost when only a share of alpha may be used, over the optimum's cost."""
    shares = np.array([0.25, 0.5, 0.75])
    return {
        f"alpha={a:g}": {
            f"{s:g}": float(c) for s, c in zip(shares, truth.cost_at_budget(a, shares), strict=True)
        }
        for a in alphas
    }


def bench_truth(costs: StageCosts, world: ScoreWorld | None = None) -> WorldTruth:
    """The benchmark's oracle: ``world`` (default: the demo score world) on the default grid."""
    return WorldTruth(world or demo_world(), ThresholdGrid.default(), costs)


def run(costs: StageCosts, cfg: DecisionsConfig, world: ScoreWorld | None = None,
        tick: Tick | None = None) -> dict[str, object]:  # fmt: skip
    """The whole benchmark as a JSON-ready dict (the report's keys are contracts)."""
    world = world or demo_world()
    truth = bench_truth(costs, world)
    main = cells(truth, cfg, tick)
    previous = cells(truth, cfg, tick, previous=True)
    unpriced = bench_truth(replace(costs, miss=0.0), world)
    stress = cells(unpriced, cfg, tick) | {
        "cost_when_using_share_of_alpha": budget_curve(unpriced, cfg.alphas)
    }
    two = {f"alpha={a:g}": _cell(truth, 10_000, a, cfg, cfg.beta, tick) for a in cfg.alphas}
    return {
        "config": cfg.as_dict(),
        "costs": costs.as_dict(),
        "world": asdict(world),
        "cost_over_optimum": main["cost_over_optimum"],
        "violation_rate": main["violation_rate"],
        "fallback_rate": main["fallback_rate"],
        "drift": drift_case(truth, cfg, tick),
        "bonferroni_cost_over_optimum": main["bonferroni"],
        "information_limit_cost_over_optimum": main["information_limit"],
        "cost_when_using_share_of_alpha": budget_curve(truth, cfg.alphas),
        "previous_window": previous,
        "misses_unpriced": stress,
        "two_sided_n=10000": {"beta": cfg.beta, **two},
    }


def targets(report: dict[str, object]) -> dict[str, bool]:
    """The issue's targets, each as met / not met, read off the report."""
    cfg = report["config"]
    assert isinstance(cfg, dict)
    cost, viol, fall = (report[k] for k in ("cost_over_optimum", "violation_rate", "fallback_rate"))
    drift = report["drift"]
    assert isinstance(cost, dict) and isinstance(viol, dict) and isinstance(fall, dict)
    assert isinstance(drift, dict)

    def at(table: dict[str, dict[str, float]], n: int) -> list[float]:
        return [row[f"n={n}"] for row in table.values() if f"n={n}" in row]

    return {
        "violation_rate_at_most_delta": all(
            v <= cfg["delta"] for row in viol.values() for v in row.values()
        ),
        "cost_over_optimum_at_most_1.10_at_n=10000": all(c <= 1.10 for c in at(cost, 10_000)),
        "cost_over_optimum_at_most_1.05_at_n=50000": all(c <= 1.05 for c in at(cost, 50_000)),
        "certifies_at_n=2000_alpha=0.003": fall.get("alpha=0.003", {}).get("n=2000", 1.0) < 1.0,
        "drift_detected_in_90%_within_labels": drift["drift"]["detected_rate"] >= 0.9,
    }
