"""`cascade bench`: benchmarks that write a report (markdown + JSON + PNG plots)."""

from __future__ import annotations

import click

from services.cli import LazyGroup

BENCHES: dict[str, tuple[str, str, str]] = {
    "all": ("services.cli.bench_all", "all_benches", "Every benchmark below, one report folder."),
    "engines": (
        "services.cli.bench_engines",
        "engines",
        "Images/s per engine and precision at batch 1..256, accuracy per engine.",
    ),
    "e2e": (
        "services.cli.bench_e2e",
        "e2e",
        "HTTP upload to final decision through Redis and the workers: images/s, latency.",
    ),
    "cascade": (
        "services.cli.bench_cascade",
        "cascade",
        "Cost per image vs miss rate: stage-1-only, stage-2-only, tuned cascade.",
    ),
    "load": ("services.cli.bench_load", "load", "2x capacity for 60 s, a fault: held, p99, lost."),
    "dashboard": (
        "services.cli.bench_dashboard",
        "dashboard",
        "Dashboard data endpoints over 1,000,000 generated decisions.",
    ),
}


@click.group(cls=LazyGroup, lazy=BENCHES)
def bench() -> None:
    """Benchmarks. Each writes its report under --out (default: reports/)."""
