"""The benchmark's bulk loader writes the same roll-ups the product computes: its cells (from
numpy arrays) equal what ``cascade.rollup.catch_up`` makes from the loaded rows, and its cost
cells equal the sums of the ledger minutes."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, select, update

from cascade import rollup
from cascade.context import Context
from cascade.db.schema import CostLedger, CostRollup, DecisionRollup, LatencyRollup, Submission
from services.bench.scale_data import generate
from services.bench.scale_db import prices, seed_small_tables
from services.bench.scale_load import load
from tests.rollup.test_rollup_model import _table

DECISION_KEYS = ["grain_s", "start_s", "decider", "audit"]
LATENCY_KEYS = ["grain_s", "start_s", "bucket"]


def test_loaded_rollups_equal_the_products(context: Context) -> None:
    end = datetime.now(UTC) - timedelta(seconds=5)
    gen = generate(n=5000, start=end - timedelta(days=3), end=end, seed=8, audit_rate=0.1)
    seed_small_tables(context.engine, gen.changes)
    load(context.engine, gen, prices(context.settings), first=False)
    with context.sessions() as session:
        loaded = (
            _table(session, DecisionRollup, DECISION_KEYS, "decided"),
            _table(session, LatencyRollup, LATENCY_KEYS, "n"),
        )
        session.execute(delete(DecisionRollup))
        session.execute(delete(LatencyRollup))
        session.execute(update(Submission).values(rolled_decided_at=None, rolled_decided_by=None))
        session.commit()
        while rollup.catch_up(session, limit=1500):
            session.commit()
        session.commit()
        computed = (
            _table(session, DecisionRollup, DECISION_KEYS, "decided"),
            _table(session, LatencyRollup, LATENCY_KEYS, "n"),
        )
        minutes = session.execute(select(CostLedger.minute, CostLedger.bucket, CostLedger.dollars))
        expected: Counter[tuple[int, int, str]] = Counter()
        for minute, bucket, dollars in minutes:
            epoch = int(minute.timestamp())
            for grain in rollup.GRAINS:
                expected[(grain, epoch - epoch % grain, bucket)] += dollars
        cells = _table(session, CostRollup, ["grain_s", "start_s", "bucket"], "dollars")
    assert sum(loaded[0].values()) == 3 * gen.n  # every decision, once per grain
    assert loaded == computed
    assert cells.keys() == expected.keys()
    assert all(cells[k] == pytest.approx(v) for k, v in expected.items())


def test_epoch_microseconds_are_exact_at_the_end_of_a_second(context: Context) -> None:
    """SQLite rounds times to the millisecond before its date functions see them; the roll-ups'
    clock must not (a time at …:59.9996 is still in that second, and its latency exact)."""
    at = datetime(2026, 3, 1, 11, 59, 59, 999_600, tzinfo=UTC)
    dialect = context.engine.dialect.name
    with context.sessions() as session:
        got = session.scalar(select(rollup.epoch_us(CostLedger.minute, dialect)).select_from(
            CostLedger).where(CostLedger.bucket == "x"))  # fmt: skip
        assert got is None
        session.add(CostLedger(minute=at, bucket="x", images=0, device_seconds=0, dollars=0))
        session.flush()
        got = session.scalar(select(rollup.epoch_us(CostLedger.minute, dialect)))
    assert got == int(at.timestamp()) * 1_000_000 + at.microsecond
