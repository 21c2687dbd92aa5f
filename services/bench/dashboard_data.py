"""Generated decisions for the dashboard benchmark and its tests: a daily cycle over many days,
three threshold-set activations that shift the share decided at stage 1, cost-ledger rows
computed from the same decisions, bulk-loaded into a fresh database."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

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
)

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
    p1 = settings.stage_price_per_hour("stage1")
    p2 = settings.stage_price_per_hour("stage2")
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
