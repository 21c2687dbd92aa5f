"""`cascade bench dashboard`: time the dashboard's data endpoints over many generated decisions.

A fresh database gets ``--n`` decisions spread over ``--days`` days
(``services.bench.dashboard_data``). Each endpoint is then requested ``--runs`` times per
window through the real app (auth, queries, JSON), and the median and p95 are reported.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from cascade.config import Settings
from cascade.db.schema import CostLedger, User
from services.bench.dashboard_data import analyze, fresh_database, generate, load
from services.bench.report import figure, write_report

ENDPOINTS = ("cost", "latency", "queues", "thresholds")
SPANS = ("24h", "30d")
TARGET_MS = 300


def _timed(client: Any, url: str) -> float:
    t0 = time.perf_counter()
    response = client.get(url, headers={"Accept": "application/json"})
    elapsed = (time.perf_counter() - t0) * 1000
    if response.status_code != 200:
        raise click.ClickException(f"{url}: HTTP {response.status_code}")
    return elapsed


def _summary(times: list[float]) -> dict[str, float]:
    times = sorted(times)
    return {
        "median_ms": statistics.median(times),
        "p95_ms": times[min(len(times) - 1, round(0.95 * (len(times) - 1)))],
    }


def time_endpoints(app: Any, user_id: int, runs: int) -> dict[str, dict[str, Any]]:
    """Median and p95 milliseconds per endpoint and window, through the app's test client.

    ``cold``: the settled-slot cache emptied before each request (a fresh process, or the
    first look at a window); ``warm``: the page's own auto-refresh, only new slots queried.
    """
    from cascade.stats import SlotCache

    client = app.test_client()
    with client.session_transaction() as s:
        s["user_id"] = user_id
    cache = app.extensions.setdefault("cascade_slot_cache", SlotCache())
    results: dict[str, dict[str, Any]] = {}
    for span in SPANS:
        for name in ENDPOINTS:
            url = f"/dashboard/api/{name}?span={span}"
            cold = []
            for _ in range(runs):
                cache.clear()
                cold.append(_timed(client, url))
            warm = [_timed(client, url) for _ in range(runs)]
            results[f"{name}?span={span}"] = {
                "cold": _summary(cold),
                "warm": _summary(warm),
                "runs": runs,
            }
    return results


def report(
    out: Path, meta: dict[str, Any], results: dict[str, dict[str, Any]], name: str
) -> list[Path]:
    """``<name>.md``, ``<name>.json`` (``{"meta", "endpoints"}``) and ``<name>.png``."""
    lines = [
        "# Dashboard data endpoints",
        "",
        f"{meta['n']:,} generated decisions over {meta['days']} days in a fresh "
        f"{meta.get('backend', 'sqlite')} database "
        f"({meta['ledger_rows']:,} ledger rows); load took {meta['load_s']:.1f} s. Each endpoint "
        f"was requested {meta['runs']} times per window through the Flask app (auth, queries, "
        f"JSON). Target: each endpoint <= {TARGET_MS} ms.",
        "",
        "*cold*: the cache of settled time slots emptied before each request (first look at a",
        "window, fresh process); *warm*: the page's 30-second auto-refresh, which queries only",
        "the slots that are not over yet.",
        "",
        f"| endpoint | cold median ms | cold p95 ms | warm median ms | warm p95 ms | p95 <= {TARGET_MS} ms |",
        "| --- | ---: | ---: | ---: | ---: | :---: |",
    ]
    for endpoint, r in results.items():
        c, w = r["cold"], r["warm"]
        ok = " / ".join("yes" if x["p95_ms"] <= TARGET_MS else "**no**" for x in (c, w))
        lines.append(
            f"| `/dashboard/api/{endpoint}` | {c['median_ms']:.1f} | {c['p95_ms']:.1f} "
            f"| {w['median_ms']:.1f} | {w['p95_ms']:.1f} | {ok} |"
        )
    lines += ["", f"![{name}]({name}.png)", "",
              f"Command: `{meta['command']}`; machine: {meta['machine']}.", ""]  # fmt: skip
    return write_report(out, name, {"meta": meta, "endpoints": results}, "\n".join(lines),
                        _plot(results))  # fmt: skip


def _plot(results: dict[str, dict[str, Any]]) -> Any:
    names = list(results)
    fig, ax = figure(figsize=(9, 4.5))
    x = range(len(names))
    ax.barh([i + 0.2 for i in x], [results[n]["cold"]["p95_ms"] for n in names], 0.4,
            label="cold p95", color="#27a")  # fmt: skip
    ax.barh([i - 0.2 for i in x], [results[n]["warm"]["p95_ms"] for n in names], 0.4,
            label="warm p95", color="#2a7")  # fmt: skip
    ax.axvline(TARGET_MS, color="#c44", linestyle=":", label=f"target {TARGET_MS} ms")
    ax.set_yticks(list(x), names)
    ax.invert_yaxis()
    ax.set_xlabel("ms per request")
    ax.legend(loc="lower right")
    return fig


def run_bench(database_url: str, n: int, days: float, runs: int) -> dict[str, Any]:
    """Generate, load, analyse, time; returns the report's meta and results."""
    from cascade.context import Context
    from cascade.db.session import session_scope, upgrade
    from services.app import create_app
    from services.auth import hash_password

    # Validated from a dict, not read from CASCADE_*: the bench never touches a real DB.
    settings = Settings.model_validate({"env": "test", "database_url": database_url})
    upgrade(database_url)
    ctx = Context.from_settings(settings)
    try:
        t0 = time.perf_counter()
        gen = generate(n=n, days=days, end=datetime.now(UTC) - timedelta(seconds=5))
        load(ctx.engine, gen, settings)
        analyze(ctx.engine)
        load_s = time.perf_counter() - t0
        click.echo(f"loaded {n:,} decisions in {load_s:.1f} s")
        with session_scope(ctx.sessions) as session:
            user = User(username="bench-ops", password_hash=hash_password("x"), role="ops")
            session.add(user)
            session.flush()
            ledger = session.query(CostLedger).count()
            user_id = user.id
        results = time_endpoints(create_app(context=ctx), user_id, runs)
    finally:
        ctx.close()
    return {
        "load_s": load_s,
        "ledger_rows": ledger,
        "backend": ctx.engine.dialect.name,
        "results": results,
    }


@click.command("dashboard")
@click.option("--n", "n", default=1_000_000, show_default=True, help="Decisions to generate.")
@click.option("--days", default=30.0, show_default=True)
@click.option("--runs", default=7, show_default=True, help="Requests per endpoint and window.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("reports"), show_default=True)
@click.option(
    "--postgres-url",
    default=None,
    help="Run on a fresh database created on this PostgreSQL server instead of SQLite "
    "(report: dashboard-postgresql.md).",
)
def dashboard(n: int, days: float, runs: int, out: Path, postgres_url: str | None) -> None:
    """Dashboard data endpoints over 1,000,000 generated decisions."""
    import os
    import platform

    with (
        tempfile.TemporaryDirectory(prefix="cascade-bench-dash-") as tmp,
        fresh_database(tmp, postgres_url) as url,
    ):
        run = run_bench(url, n, days, runs)
    results = run.pop("results")
    command = f"cascade bench dashboard --n {n} --days {days:g} --runs {runs}"
    meta = {
        "n": n,
        "days": days,
        "runs": runs,
        **run,
        "command": command + (" --postgres-url ..." if postgres_url else ""),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
    }
    name = "dashboard" if run["backend"] == "sqlite" else f"dashboard-{run['backend']}"
    paths = report(out, meta, results, name)
    for endpoint, r in results.items():
        c, w = r["cold"], r["warm"]
        click.echo(
            f"{endpoint:22s} cold median {c['median_ms']:7.1f} p95 {c['p95_ms']:7.1f} ms | "
            f"warm median {w['median_ms']:6.1f} p95 {w['p95_ms']:6.1f} ms"
        )
    click.echo("wrote " + ", ".join(map(str, paths)))
