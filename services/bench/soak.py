"""`make soak`: each fault scenario run N times against a live stack under Locust traffic,
writing reports/soak.{md,json,png}: per scenario ``runs``, ``lost``, ``duplicated_callbacks``,
``stalls`` and ``max_recovery_s``.

A run: Locust offers a steady trickle of uploads (a callback URL on each) for ``RUN_S``
seconds; half-way the fault is injected (and undone: the component is back at ``fault_end``);
then every accepted image is followed until it is final or ``DRAIN_S`` has passed.

* ``lost``: accepted (2xx) and still not final at the end of the drain.
* ``duplicated_callbacks``: images whose signed callback arrived more than once.
* ``stalls``: images decided more than ``STALL_S`` after ``max(upload, fault_end)`` (or never).
* ``max_recovery_s``: over the runs, the time from ``fault_end`` until every image accepted
  before it was final.

The stack is the product's (``Stack``: own Redis with AOF unless the scenario says otherwise,
beat, the stage workers, the callbacks worker, the web app) with tiny untrained models
(``models.testing``): the soak is about the plumbing, not the scores. One stack serves all
runs of a scenario; ``stack_sigterm`` runs a real ``cascade up`` and SIGTERMs it.

    python -m services.bench.soak --runs 20 --out reports   (make soak; SOAK_RUNS=N)
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import click

from services.bench.faults import (
    CallbackCounter,
    ThrowawayPostgres,
    kill_stage_worker,
    pause_redis,
    restart_redis,
)
from services.bench.soak_report import report
from services.bench.soak_run import (
    STALL_S,
    RunResult,
    SoakTarget,
    measure,
    start_target,
    summarise,
)

RUN_S = 12.0  # seconds of traffic per run; the fault comes half-way
RATE = 8.0  # uploads per second
SCENARIOS = (
    "stage_worker_sigkill",
    "redis_restart_aof",
    "redis_restart_no_aof",
    "postgres_restart",
    "broker_unreachable_10s",
    "stack_sigterm",
)


def inject(scenario: str, target: SoakTarget, run: int) -> None:
    """The fault of ``scenario`` for run number ``run``; returns once the component is back."""
    if scenario == "stage_worker_sigkill":  # stage 1 and stage 2 in turn
        stage = 1 + run % 2
        kill_stage_worker(target.stack(), f"worker-stage{stage}-0", queue=f"stage{stage}")
    elif scenario == "redis_restart_aof":
        restart_redis(target.stack(), persist=True)
    elif scenario == "redis_restart_no_aof":
        restart_redis(target.stack(), persist=False)
    elif scenario == "postgres_restart":
        assert target.postgres is not None
        target.postgres.restart(down_s=5.0)
    elif scenario == "broker_unreachable_10s":
        pause_redis(target.stack(), 10.0)
    elif scenario == "stack_sigterm":
        target.restart_up()
    else:
        raise ValueError(f"unknown scenario {scenario!r}")


@contextmanager
def scenario_target(scenario: str, workdir: Path, models: Path) -> Iterator[SoakTarget]:
    """The running stack a scenario's runs share (and its throw-away PostgreSQL)."""
    postgres = ThrowawayPostgres() if scenario == "postgres_restart" else None
    try:
        with start_target(
            workdir,
            models,
            database_url=postgres.url if postgres else None,
            redis_persist=scenario != "redis_restart_no_aof",
            as_cascade_up=scenario == "stack_sigterm",
        ) as target:
            target.postgres = postgres
            yield target
    finally:
        if postgres is not None:
            postgres.close()


def soak_scenario(
    scenario: str, runs: int, workdir: Path, models: Path, seed: int, echo: Callable[[str], None]
) -> list[RunResult]:
    results = []
    with scenario_target(scenario, workdir / scenario, models) as target:
        counter = CallbackCounter(target.settings.callback_secret)
        try:
            for run in range(runs):
                result = measure(
                    target, counter, partial(inject, scenario, target, run),
                    rate=RATE, run_s=RUN_S, seed=seed * 1000 + run, name=f"{scenario}-{run}",
                )  # fmt: skip
                results.append(result)
                echo(f"{scenario} run {run + 1}/{runs}: {result.line()}")
        finally:
            counter.close()
    return results


def _models(workdir: Path) -> Path:
    from models.testing import make_tiny_model_dir

    return make_tiny_model_dir(workdir / "models", size=32)


@click.command()
@click.option("--runs", type=int, default=20, show_default=True, help="Runs per scenario.")
@click.option("--scenarios", default=",".join(SCENARIOS), show_default=True,
              help="Comma-separated scenarios.")  # fmt: skip
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--keep/--no-keep", default=False, help="Keep the stacks' folders (logs, DBs).")
@click.option("--out", type=click.Path(path_type=Path), default=Path("reports"), show_default=True)
def soak(runs: int, scenarios: str, seed: int, keep: bool, out: Path) -> None:
    """Run each fault scenario RUNS times; write OUT/soak.{md,json,png}."""
    chosen = [s.strip() for s in scenarios.split(",") if s.strip()]
    unknown = set(chosen) - set(SCENARIOS)
    if unknown:
        raise click.BadParameter(f"unknown scenarios {sorted(unknown)}; known: {SCENARIOS}")
    workdir = Path(tempfile.mkdtemp(prefix="cascade-soak-"))
    click.echo(f"soak: {runs} runs of {', '.join(chosen)}; work folder {workdir}")
    started = datetime.now(UTC)
    models = _models(workdir)
    per_run: dict[str, list[RunResult]] = {}
    for scenario in chosen:
        per_run[scenario] = soak_scenario(scenario, runs, workdir, models, seed, click.echo)
    result: dict[str, Any] = {
        "started_at": started.isoformat(timespec="seconds"),
        "runs_per_scenario": runs,
        "run_s": RUN_S,
        "offered_per_s": RATE,
        "stall_after_s": STALL_S,
        "scenarios": {s: summarise(rs) for s, rs in per_run.items()},
        "per_run": {s: [asdict(r) for r in rs] for s, rs in per_run.items()},
    }
    paths = report(result, out)
    click.echo("report: " + ", ".join(map(str, paths)))
    if not keep:
        shutil.rmtree(workdir, ignore_errors=True)
    for name, figures in result["scenarios"].items():
        click.echo(f"{name}: {figures}")


if __name__ == "__main__":
    soak()
