"""`cascade bench scale`: every read at ten million decisions, on SQLite and on PostgreSQL.

Per database: the dashboard's endpoints for every window, cold (a fresh process each time: a new
connection, and on SQLite the file's pages dropped from the OS cache — ``scale_probe``) and warm
(the same app asked again), the median of ``--runs`` each; the review queue's next item + lease
with a million items waiting; the whole retune over the audit sample (a million labelled audits
at the default size); the near-duplicate lookup over every generated image. The databases are
generated once and kept (``scale_db``). Report: ``scale.md``, ``scale.json``, ``scale.png``.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click

from cascade.config import Settings
from services.bench import scale_db
from services.bench.scale_load import MODERATORS
from services.bench.scale_report import write
from services.dashboard import SPANS_S

ENDPOINTS = ("cost", "latency", "queues", "thresholds")
OPS_USER_ID = MODERATORS + 1


def _probe(*args: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "services.bench.scale_probe", *args],
                         check=True, capture_output=True, text=True)  # fmt: skip
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _paths() -> list[str]:
    return [f"/dashboard/api/{name}?span={span}" for span in SPANS_S for name in ENDPOINTS]


def time_cold(url: str, runs: int) -> dict[str, list[float]]:
    """Milliseconds of each endpoint's first request in ``runs`` fresh processes."""
    cold: dict[str, list[float]] = {}
    for path in _paths():
        cold[path] = [_probe("endpoint", "--url", url, "--path", path,
                             "--user-id", str(OPS_USER_ID))["ms"] for _ in range(runs)]  # fmt: skip
    return cold


def time_warm(url: str, runs: int) -> dict[str, list[float]]:
    """Milliseconds of each endpoint asked again and again of one warm app."""
    from cascade.context import Context
    from services.app import create_app

    context = Context.from_settings(Settings.model_validate({"env": "test", "database_url": url}))
    client = create_app(context=context).test_client()
    with client.session_transaction() as s:
        s["user_id"] = OPS_USER_ID
    warm: dict[str, list[float]] = {}
    for path in _paths():
        client.get(path, headers={"Accept": "application/json"})
        warm[path] = []
        for _ in range(runs):
            t0 = time.perf_counter()
            response = client.get(path, headers={"Accept": "application/json"})
            warm[path].append((time.perf_counter() - t0) * 1000)
            if response.status_code != 200:
                raise click.ClickException(f"{path}: HTTP {response.status_code}")
    context.close()
    return warm


def time_retune(url: str) -> dict[str, Any]:
    """The whole retune job (load, optimise, store the proposal) on a fresh context — the
    figure reported — then its loading part alone, again (so with a warm cache), to say
    where the time goes."""
    from cascade.context import Context
    from cascade.db.schema import utcnow
    from feedback import store
    from feedback.retune import audit_windows, retune

    context = Context.from_settings(Settings.model_validate({"env": "test", "database_url": url}))
    try:
        t0 = time.perf_counter()
        proposal = retune(context, by="bench-scale", reason="cascade bench scale")
        retune_s = time.perf_counter() - t0
        with context.sessions() as session:
            t0 = time.perf_counter()
            windows = audit_windows(session, utcnow())
            sample = store.load_audit_sample(session, since=windows.since, until=windows.until)
            load_s = time.perf_counter() - t0
    finally:
        context.close()
    return {"retune_s": retune_s, "load_audit_sample_s": load_s, "audit_rows": len(sample.s1),
            "certified": proposal.optimum.certified, "n_samples": proposal.optimum.n_samples}  # fmt: skip


def review_waiting(url: str) -> int:
    """Items waiting in the review queue (the depth the claim was measured at)."""
    from cascade.context import Context
    from cascade.stats import review_backlog

    context = Context.from_settings(Settings.model_validate({"env": "test", "database_url": url}))
    with context.sessions() as session:
        backlog, _ = review_backlog(session)
    context.close()
    return sum(backlog.values())


def measure(url: str, runs: int) -> dict[str, Any]:
    """Everything the report holds for one database."""
    cold, warm = time_cold(url, runs), time_warm(url, runs)
    endpoints = {
        path.removeprefix("/dashboard/api/"): {
            "cold_ms": statistics.median(cold[path]),
            "warm_ms": statistics.median(warm[path]),
            "cold_runs_ms": cold[path],
            "warm_runs_ms": warm[path],
        }
        for path in cold
    }
    waiting = review_waiting(url)
    users = ",".join(str(u) for u in range(1, runs + 1))
    review = _probe("review", "--url", url, "--users", users)
    near = _probe("near-duplicate", "--url", url, "--runs", str(runs))
    retune = time_retune(url)
    return {
        "endpoints": endpoints,
        "review_next_ms": review["median_ms"],
        "review_waiting": waiting,
        "review_next_runs_ms": review["ms"],
        "near_duplicate_lookup_ms": near["median_ms"],
        "near_duplicate": near,
        **retune,
    }


def _kept(out: Path, params: dict[str, Any], backends: tuple[str, ...]) -> dict[str, Any]:
    """Results of the databases not measured in this run, from the report already in ``out``,
    when they were measured on data generated with the same parameters: a rerun of one
    database keeps the other's figures in ``scale.json``."""
    path = out / "scale.json"
    if not path.exists():
        return {}
    try:
        old = json.loads(path.read_text())
    except ValueError:
        return {}
    return {
        name: result
        for name, result in old.items()
        if name in ("sqlite", "postgresql")
        and name not in backends
        and result.get("data", {}).get("params") == params
    }


@click.command("scale")
@click.option("--n", "n", default=10_000_000, show_default=True, help="Decisions to generate.")
@click.option("--days", default=30.0, show_default=True)
@click.option("--audit-rate", default=0.22, show_default=True,
              help="Audited share of the non-cache decisions; the older half labelled (the "
              "retune's sample), the newer half waiting. 0.22 puts over 1,000,000 rows in each "
              "at 10,000,000 decisions (0.2 gave 949,000).")  # fmt: skip
@click.option("--runs", default=5, show_default=True, help="Requests per endpoint, cold and warm.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("reports"), show_default=True)
@click.option("--data", type=click.Path(path_type=Path), default=Path("var/bench-scale"),
              show_default=True, help="Where the SQLite database and the metas are kept.")  # fmt: skip
@click.option("--postgres-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
              show_default=True, help="A PostgreSQL server to create --pg-database on.")  # fmt: skip
@click.option("--pg-database", default="cascade_scale", show_default=True)
@click.option("--backend", "backends", multiple=True, default=("sqlite", "postgresql"),
              type=click.Choice(["sqlite", "postgresql"]), show_default=True)  # fmt: skip
@click.option("--fresh", is_flag=True, help="Generate again even if the kept data fits.")
@click.option("--drop-postgres", is_flag=True, help="Drop --pg-database when done.")
def scale(
    n: int, days: float, audit_rate: float, runs: int, out: Path, data: Path,
    postgres_url: str, pg_database: str, backends: tuple[str, ...], fresh: bool,
    drop_postgres: bool,
) -> None:  # fmt: skip
    """Dashboard, review queue, retune and near-duplicate lookup at 10,000,000 decisions."""
    settings = Settings.model_validate({"env": "test"})
    params = {"n": n, "days": days, "seed": 0, "audit_rate": audit_rate}
    results: dict[str, Any] = _kept(out, params, backends)
    paths: list[Path] = []
    for backend in backends:
        url = (scale_db.sqlite_url(data) if backend == "sqlite"
               else scale_db.postgres_url(postgres_url, pg_database))  # fmt: skip
        meta = scale_db.ensure(url, data / f"{backend}.json", params=params, settings=settings,
                               fresh=fresh)  # fmt: skip
        click.echo(f"measuring {backend} ({meta['count']:,} decisions)")
        load_before = os.getloadavg()
        results[backend] = {"data": meta, **measure(url, runs)}
        # What else the machine was doing: the 1/5/15-minute load averages around the measuring.
        results[backend]["load_average"] = {"before": list(load_before),
                                            "after": list(os.getloadavg())}  # fmt: skip
        if backend == "postgresql" and drop_postgres:
            scale_db.drop_postgres(url)
        # Written after each database, so a failure on the next keeps what was measured.
        command = (f"cascade bench scale --n {n} --days {days:g} --audit-rate {audit_rate:g} "
                   f"--runs {runs}")  # fmt: skip
        machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
        ordered: dict[str, Any] = {b: results[b] for b in ("sqlite", "postgresql") if b in results}
        paths = write(out, {"command": command, "runs": runs, "machine": machine}, ordered)
    click.echo("wrote " + ", ".join(str(p) for p in paths))
