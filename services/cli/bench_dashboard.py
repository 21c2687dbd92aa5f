"""`cascade bench dashboard`: time the dashboard's data endpoints over many generated decisions.

A fresh SQLite database gets ``--n`` decisions spread over ``--days`` days (a daily cycle, three
threshold-set activations that shift the share decided at stage 1), with cost-ledger rows
computed from the same decisions. Each endpoint is then requested ``--runs`` times per window
through the real app (auth, queries, JSON), and the median and p95 are reported.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import numpy as np
from sqlalchemy import Engine, insert

from cascade.config import Settings
from cascade.cost import compute_dollars
from cascade.db.schema import (
    CostLedger,
    Image,
    ReviewItem,
    Submission,
    Tenant,
    ThresholdSetRow,
    User,
)

ENDPOINTS = ("cost", "latency", "queues", "thresholds")
SPANS = ("24h", "30d")
DECIDERS = np.array(["cache", "stage1", "stage2", "human"])
# Share decided by cache / stage1 / stage2 / human under threshold versions 1, 2, 3.
SHARES = {1: (0.05, 0.70, 0.18, 0.07), 2: (0.05, 0.78, 0.13, 0.04), 3: (0.05, 0.84, 0.09, 0.02)}
LATENCY_S = {"cache": (0.01, 0.3), "stage1": (0.12, 0.4), "stage2": (0.6, 0.4), "human": (900, 0.8)}
STAGE1_DEVICE_S, STAGE2_DEVICE_S = 0.004, 0.03  # per image


@dataclass(frozen=True)
class Generated:
    """Decisions as arrays: the same arrays fill the submissions and the ledger."""

    created: np.ndarray  # epoch seconds
    decided: np.ndarray
    decider: np.ndarray
    audit: np.ndarray
    version: np.ndarray
    changes: list[float]  # activation times of versions 1, 2, 3


def generate(*, n: int, days: float, end: datetime, seed: int = 0) -> Generated:
    """``n`` decisions over ``days`` days before ``end``, busier by day than by night."""
    rng = np.random.default_rng(seed)
    span = days * 86400
    start = end.timestamp() - span
    # Rejection sampling of a daily cycle: rate ∝ 1 + 0.6·sin(2π·hour/24).
    created = np.empty(0)
    while created.size < n:
        t = rng.uniform(0, span, size=2 * n)
        keep = rng.uniform(0, 1.6, size=t.size) < 1 + 0.6 * np.sin(2 * np.pi * t / 86400)
        created = np.concatenate([created, t[keep]])
    created = np.sort(created[:n]) + start
    changes = [start, start + span / 3, start + 2 * span / 3]
    version = 1 + (created >= changes[1]).astype(int) + (created >= changes[2]).astype(int)
    decider = np.empty(n, dtype=object)
    for v, shares in SHARES.items():
        mask = version == v
        decider[mask] = rng.choice(DECIDERS, size=int(mask.sum()), p=shares)
    latency = np.empty(n)
    for name, (median, sigma) in LATENCY_S.items():
        mask = decider == name
        latency[mask] = rng.lognormal(np.log(median), sigma, size=int(mask.sum()))
    decided = np.minimum(created + latency, end.timestamp() - 1)
    audit = (rng.uniform(size=n) < 0.02) & (decider != "cache")
    return Generated(created, decided, decider, audit, version, changes)


def ledger_rows(gen: Generated, settings: Settings) -> Iterator[dict[str, Any]]:
    """Per-minute ledger rows implied by the decisions: every non-cache image is screened when
    it arrives; escalated and audited ones run stage 2; human decisions and audits are labelled;
    one audit in fifty finds a miss."""
    screened = gen.decider != "cache"
    stage2 = np.isin(gen.decider, ["stage2", "human"]) | gen.audit
    labelled = (gen.decider == "human") | gen.audit
    missed = gen.audit & (np.arange(gen.audit.size) % 50 == 0)
    p1 = settings.device_price(settings.stage1_device)
    p2 = settings.device_price(settings.stage2_device)
    per_bucket = {
        "stage1": (gen.created, screened, STAGE1_DEVICE_S, p1 * STAGE1_DEVICE_S / 3600),
        "stage2": (gen.created, stage2, STAGE2_DEVICE_S, p2 * STAGE2_DEVICE_S / 3600),
        "human": (gen.decided, labelled, 0.0, settings.human_review_cost),
        "error": (gen.decided, missed, 0.0, settings.miss_cost),
    }
    for bucket, (at, mask, dev_s, dollars_each) in per_bucket.items():
        minutes, counts = np.unique((at[mask] // 60).astype(np.int64), return_counts=True)
        for minute, count in zip(minutes.tolist(), counts.tolist(), strict=True):
            yield {
                "minute": datetime.fromtimestamp(minute * 60, UTC),
                "bucket": bucket,
                "images": count,
                "device_seconds": count * dev_s,
                "dollars": count * dollars_each,
            }


def load(engine: Engine, gen: Generated, settings: Settings, chunk: int = 20_000) -> None:
    """Bulk-insert the decisions, the ledger, threshold sets and a small review backlog."""
    assert compute_dollars(3600, 1.0) == 1.0  # the ledger rows above use the same formula
    with engine.begin() as conn:
        conn.execute(insert(Tenant), [{"id": 1, "name": "bench"}])
        conn.execute(insert(Image), [_image(i) for i in range(1000)])
        _load_thresholds(conn, gen)
    n = gen.created.size
    for lo in range(0, n, chunk):
        with engine.begin() as conn:
            conn.execute(
                insert(Submission), [_submission(gen, i) for i in range(lo, min(n, lo + chunk))]
            )
    with engine.begin() as conn:
        rows = list(ledger_rows(gen, settings))
        for lo in range(0, len(rows), chunk):
            conn.execute(insert(CostLedger), rows[lo : lo + chunk])
        pending = [
            {
                "submission_id": _sid(i),
                "reason": "escalation",
                "state": "pending",
                "created_at": _at(gen.decided[i]),
            }
            for i in np.flatnonzero(gen.decider == "human")[-40:].tolist()
        ]
        conn.execute(insert(ReviewItem), pending)


def _load_thresholds(conn: Any, gen: Generated) -> None:
    rows: list[dict[str, Any]] = []
    for v, at in enumerate(gen.changes, start=1):
        rows.append(
            {
                "version": v,
                "t1_lo": 0.05 + 0.02 * v,
                "t1_hi": 0.98 - 0.02 * v,
                "t2_lo": 0.1,
                "t2_hi": 0.9,
                "status": "active" if v == 3 else "retired",
                "created_by": "bench",
                "reason": "generated",
                "expected_cost": 0.004 / v,
                "details": {},
                "created_at": _at(at - 600),
                "activated_at": _at(at),
                "activated_by": "bench",
            }
        )
    rows.append(
        {
            **rows[-1],
            "version": 4,
            "status": "proposed",
            "activated_at": None,
            "activated_by": None,
            "expected_cost": 0.001,
        }
    )
    conn.execute(insert(ThresholdSetRow), rows)


def _image(i: int) -> dict[str, Any]:
    return {
        "sha256": f"{i:064x}",
        "phash": i,
        "size_bytes": 1000,
        "width": 64,
        "height": 64,
        "format": "png",
        "blob_key": f"bench/{i}",
    }


def _sid(i: int) -> str:
    return f"00000000-0000-4000-8000-{i:012d}"


def _at(epoch: float) -> datetime:
    return datetime.fromtimestamp(float(epoch), UTC)


def _submission(gen: Generated, i: int) -> dict[str, Any]:
    decider = str(gen.decider[i])
    return {
        "id": _sid(i),
        "tenant_id": 1,
        "image_sha256": f"{i % 1000:064x}",
        "state": "decided",
        "threshold_version": int(gen.version[i]),
        "route": "allow",
        "decision": "allow",
        "decided_by": decider,
        "auto_decision": "allow",
        "audit": bool(gen.audit[i]),
        "audit_p": 0.02,
        "attempts": 1,
        "callback_attempts": 0,
        "created_at": _at(gen.created[i]),
        "decided_at": _at(gen.decided[i]),
    }


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


def write_report(
    out: Path, meta: dict[str, Any], results: dict[str, dict[str, Any]], name: str = "dashboard"
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps({"meta": meta, "endpoints": results}, indent=2))
    lines = [
        "# Dashboard data endpoints",
        "",
        f"{meta['n']:,} generated decisions over {meta['days']} days in a fresh "
        f"{meta.get('backend', 'sqlite')} database "
        f"({meta['ledger_rows']:,} ledger rows); load took {meta['load_s']:.1f} s. Each endpoint "
        f"was requested {meta['runs']} times per window through the Flask app (auth, queries, "
        "JSON). Target: each endpoint <= 300 ms.",
        "",
        "*cold*: the cache of settled time slots emptied before each request (first look at a",
        "window, fresh process); *warm*: the page's 30-second auto-refresh, which queries only",
        "the slots that are not over yet.",
        "",
        "| endpoint | cold median ms | cold p95 ms | warm median ms | warm p95 ms | p95 <= 300 ms |",
        "| --- | ---: | ---: | ---: | ---: | :---: |",
    ]
    for endpoint, r in results.items():
        c, w = r["cold"], r["warm"]
        ok = " / ".join("yes" if x["p95_ms"] <= 300 else "**no**" for x in (c, w))
        lines.append(
            f"| `/dashboard/api/{endpoint}` | {c['median_ms']:.1f} | {c['p95_ms']:.1f} "
            f"| {w['median_ms']:.1f} | {w['p95_ms']:.1f} | {ok} |"
        )
    lines += ["", f"Command: `{meta['command']}`; machine: {meta['machine']}.", ""]
    (out / f"{name}.md").write_text("\n".join(lines))


@contextmanager
def fresh_database(tmp: str, postgres_url: str | None) -> Iterator[str]:
    """A new empty database: a SQLite file in ``tmp``, or a database created on the PostgreSQL
    server at ``postgres_url`` (dropped afterwards)."""
    if not postgres_url:
        yield f"sqlite:///{tmp}/bench.db"
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"cascade_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def analyze(engine: Engine) -> None:
    """Planner statistics (and, on PostgreSQL, the visibility map that index-only scans need),
    as autovacuum would have them in a database that has been running for a while."""
    from sqlalchemy import text

    statement = "VACUUM ANALYZE" if engine.dialect.name == "postgresql" else "ANALYZE"
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(statement))


def run_bench(database_url: str, n: int, days: float, runs: int) -> dict[str, Any]:
    """Generate, load, analyse, time; returns the report's meta and results."""
    from cascade.context import Context
    from cascade.db.session import upgrade
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
        with ctx.sessions() as session:
            user = User(username="bench-ops", password_hash=hash_password("x"), role="ops")
            session.add(user)
            session.commit()
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
    write_report(out, meta, results, name=name)
    for endpoint, r in results.items():
        c, w = r["cold"], r["warm"]
        click.echo(
            f"{endpoint:22s} cold median {c['median_ms']:7.1f} p95 {c['p95_ms']:7.1f} ms | "
            f"warm median {w['median_ms']:6.1f} p95 {w['p95_ms']:6.1f} ms"
        )
    click.echo(f"wrote {out / name}.md and {out / name}.json")
