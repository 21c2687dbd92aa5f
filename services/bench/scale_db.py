"""The databases `cascade bench scale` measures: generated once, kept, topped up to now.

Ten million decisions take a while to generate, so each database is made once (a SQLite file
under ``--data``, a PostgreSQL database named ``--pg-database``) with a ``<backend>.json`` beside
it saying what is in it. A later run reuses it and first adds the traffic of the time since
(same rate, same generator), so the newest slots and the raw tail are as busy as they would be.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
from sqlalchemy import Engine, create_engine, func, insert, select, text
from sqlalchemy.engine import make_url

from cascade.config import Settings
from cascade.db.schema import Submission, Tenant, ThresholdSetRow, User
from cascade.db.session import make_engine, upgrade
from services.bench.scale_data import generate
from services.bench.scale_load import MODERATORS, load

SERIAL_TABLES = ("users", "review_items", "labels", "tenants", "cost_ledger")


def sqlite_url(data: Path) -> str:
    return f"sqlite:///{(data / 'scale.db').resolve()}"


def postgres_url(admin_url: str, database: str) -> str:
    return make_url(admin_url).set(database=database).render_as_string(hide_password=False)


def prices(settings: Settings) -> dict[str, float]:
    return {
        "stage1": settings.stage_price_per_hour("stage1"),
        "stage2": settings.stage_price_per_hour("stage2"),
        "human": settings.human_review_cost,
        "miss": settings.miss_cost,
    }


def ensure(
    url: str, meta_path: Path, *, params: dict[str, Any], settings: Settings, fresh: bool
) -> dict[str, Any]:
    """The database at ``url`` holding ``params['n']`` decisions up to now: generated when it
    is missing, differs or ``fresh``; otherwise topped up. Returns its meta (with timings)."""
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else None
    if fresh or meta is None or meta.get("params") != params:
        meta = _generate(url, params, settings)
    else:
        meta = _top_up(url, meta, settings)
    meta_path.parent.mkdir(parents=True, exist_ok=True)
    meta_path.write_text(json.dumps(meta, indent=2))
    return meta


def _generate(url: str, params: dict[str, Any], settings: Settings) -> dict[str, Any]:
    _recreate(url)
    upgrade(url)
    engine = make_engine(url)
    try:
        end = datetime.now(UTC)
        start = end - timedelta(days=params["days"])
        t0 = time.perf_counter()
        gen = generate(n=params["n"], start=start, end=end, seed=params["seed"],
                       audit_rate=params["audit_rate"])  # fmt: skip
        generate_s = time.perf_counter() - t0
        seed_small_tables(engine, gen.changes)
        load(engine, gen, prices(settings), first=True)
        load_s = time.perf_counter() - t0 - generate_s
        analyze(engine)
        total_s = time.perf_counter() - t0
    finally:
        engine.dispose()
    click.echo(f"generated {params['n']:,} decisions in {total_s:.0f} s ({url.split(':')[0]})")
    return {
        "params": params,
        "count": params["n"],
        "start": start.isoformat(),
        "end": end.isoformat(),
        "changes": gen.changes,
        "generated_at": end.isoformat(),
        "timing_s": {
            "arrays": generate_s,
            "load": load_s,
            "analyze": total_s - load_s - generate_s,
            "total": total_s,
        },
    }


def _top_up(url: str, meta: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """Bring the kept database to the current schema, then add the traffic of the time since
    the last run at the generated rate."""
    upgrade(url)
    last = datetime.fromisoformat(meta["end"])
    now = datetime.now(UTC)
    rate = meta["params"]["n"] / (meta["params"]["days"] * 86400)
    n = int(rate * (now - last).total_seconds())
    if n < 1:
        return meta
    engine = make_engine(url)
    try:
        t0 = time.perf_counter()
        gen = generate(n=n, start=last, end=now, seed=meta["params"]["seed"] + meta["count"],
                       first_id=meta["count"], audit_rate=meta["params"]["audit_rate"],
                       changes=meta["changes"])  # fmt: skip
        load(engine, gen, prices(settings), first=False)
        analyze(engine)
        _reset_sequences(engine)
    finally:
        engine.dispose()
    click.echo(f"topped up {n:,} decisions in {time.perf_counter() - t0:.0f} s")
    return {**meta, "count": meta["count"] + n, "end": now.isoformat(),
            "last_top_up": {"n": n, "s": time.perf_counter() - t0}}  # fmt: skip


def _recreate(url: str) -> None:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = Path(parsed.database or "")
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{parsed.database}"'))
    admin.dispose()


def drop_postgres(url: str) -> None:
    parsed = make_url(url)
    admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)'))
    admin.dispose()


def seed_small_tables(engine: Engine, changes: list[float]) -> None:
    """The tenant, moderators (user ids 1..MODERATORS, who labelled the audits), an ops user,
    three activated threshold sets and a proposed one."""
    with engine.begin() as conn:
        conn.execute(insert(Tenant), [{"id": 1, "name": "bench"}])
        users = [{"username": f"mod-{i:02d}", "password_hash": "-", "role": "moderator"}
                 for i in range(MODERATORS)]  # fmt: skip
        conn.execute(insert(User), [*users, {"username": "ops", "password_hash": "-",
                                             "role": "ops"}])  # fmt: skip
        conn.execute(insert(ThresholdSetRow), threshold_rows(changes))


def threshold_rows(changes: list[float]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for v, at in enumerate(changes, start=1):
        activated = datetime.fromtimestamp(at, UTC)
        rows.append({
            "version": v, "t1_lo": 0.05 + 0.02 * v, "t1_hi": 0.98 - 0.02 * v, "t2_lo": 0.1,
            "t2_hi": 0.9, "status": "active" if v == 3 else "retired", "created_by": "bench",
            "reason": "generated", "expected_cost": 0.004 / v, "details": {},
            "created_at": activated - timedelta(minutes=10), "activated_at": activated,
            "activated_by": "bench",
        })  # fmt: skip
    rows.append({**rows[-1], "version": 4, "status": "proposed", "activated_at": None,
                 "activated_by": None, "expected_cost": 0.001})  # fmt: skip
    return rows


def analyze(engine: Engine) -> None:
    """Planner statistics (and on PostgreSQL the visibility map index-only scans need), as
    autovacuum would have them in a database that has been running for a while."""
    statement = "VACUUM ANALYZE" if engine.dialect.name == "postgresql" else "ANALYZE"
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(statement))
    _reset_sequences(engine)


def _reset_sequences(engine: Engine) -> None:
    """Rows loaded with explicit ids leave PostgreSQL's sequences behind; move them on."""
    if engine.dialect.name != "postgresql":
        return
    with engine.begin() as conn:
        for table in SERIAL_TABLES:
            conn.execute(text(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"COALESCE((SELECT max(id) FROM {table}), 0) + 1, false)"
            ))  # fmt: skip


def decision_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(Submission)) or 0)
