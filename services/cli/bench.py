"""`cascade bench`: the benchmarks of ``services.bench``, each writing a report (markdown + JSON
+ PNG) through ``services.bench.report``."""

from __future__ import annotations

import click

from services.cli import LazyGroup

BENCHES: dict[str, tuple[str, str, str]] = {
    "all": ("services.bench.all", "all_benches", "Every benchmark below, one report folder."),
    "engines": (
        "services.bench.engines",
        "engines",
        "Images/s per engine and precision at batch 1..256, accuracy per engine.",
    ),
    "e2e": (
        "services.bench.e2e",
        "e2e",
        "HTTP upload to final decision through Redis and the workers: images/s, latency.",
    ),
    "cascade": (
        "services.bench.cost_vs_miss",
        "cascade",
        "Cost per image vs miss rate: stage-1-only, stage-2-only, tuned cascade.",
    ),
    "seeds": (
        "services.bench.seeds",
        "seeds",
        "The demo recipe trained with several seeds, each judged as `bench cascade` does.",
    ),
    "peers": (
        "services.bench.peers",
        "peers",
        "open_nsfw vs the default screener on real photographs; a cascade's projected saving.",
    ),
    "decisions": (
        "services.bench.decisions",
        "decisions",
        "Certified thresholds vs the true optimum: cost, violations, fallbacks, drift alarms.",
    ),
    "loop": (
        "services.bench.loop",
        "loop",
        "The demo's label-retune loop replayed 100 times on the models' scores: how often it pays.",
    ),
    "load": ("services.bench.load", "load", "2x capacity for 60 s, a fault: held, p99, lost."),
    "scale": (
        "services.bench.scale",
        "scale",
        "Dashboard, review queue, retune, near-duplicates at 10,000,000 decisions (SQLite, PG).",
    ),
}


@click.group(cls=LazyGroup, lazy=BENCHES)
def bench() -> None:
    """Benchmarks. Each writes its report under --out (default: reports/)."""
