"""Decisions made outside the stage workers (a human label, a cache hit) are rolled up by beat's
sweep; until then the dashboard already counts them (the unrolled tail)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from cascade import maintenance, rollup, series
from cascade.context import Context
from cascade.db.schema import DecisionRollup, Image, Submission, Tenant
from cascade.decisions import finalize
from cascade.policy import Decider, Outcome
from services.worker import beat_schedule
from tests.rollup.test_rollup_model import _direct_cells, _rows, _table


def test_the_sweep_rolls_up_what_the_workers_did_not(context: Context) -> None:
    now = datetime.now(UTC)
    with context.sessions() as session:
        session.add(Tenant(id=1, name="t"))
        session.add(Image(sha256="0" * 64, phash=0, size_bytes=1, width=1, height=1,
                          format="png", blob_key="k"))  # fmt: skip
        for i in range(30):
            sub = Submission(id=str(uuid.uuid4()), tenant_id=1, image_sha256="0" * 64,
                             state="queued", created_at=now - timedelta(minutes=90 + i))  # fmt: skip
            session.add(sub)
            decider = Decider.HUMAN if i % 3 else Decider.CACHE
            finalize(sub, outcome=Outcome.ALLOW, decider=decider, at=now - timedelta(minutes=i + 1))
        session.commit()
        window = series.make_window(end=now, span_s=6 * 3600)
        before = series.decision_series(session, window=window)
        unrolled = select(func.count()).select_from(Submission).where(rollup.unrolled())
        assert session.scalar(unrolled) == 30
    # Three rows a transaction: the sweep goes on until nothing is left.
    assert maintenance.roll_up(context, limit=3) == 30
    with context.sessions() as session:
        assert session.scalar(unrolled) == 0
        assert series.decision_series(session, window=window) == before
        decided, _ = _direct_cells(_rows(session))
        keys = ["grain_s", "start_s", "decider", "audit"]
        assert _table(session, DecisionRollup, keys, "decided") == decided
    assert sum(before["decided"]) == 30


def test_beat_runs_the_sweep_every_minute(context: Context) -> None:
    entry = beat_schedule(context.settings)["roll-up"]
    assert entry["task"] == "cascade.maintenance.roll_up" and entry["schedule"] == 60.0
