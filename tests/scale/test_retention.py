"""Retention (cascade.retention, `cascade db prune`): raw submissions, their images and blobs
go after N days; audit rows, labelled items and the hourly and daily roll-ups stay, and the
figures the dashboard draws from them over the pruned time do not change."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select, update

from cascade import retention, rollup, series
from cascade.context import Context
from cascade.db.schema import (
    CostLedger,
    CostRollup,
    DecisionRollup,
    Image,
    LatencyRollup,
    ReviewItem,
    Submission,
)
from services.bench.scale_data import generate
from services.bench.scale_db import prices, seed_small_tables
from services.bench.scale_load import load
from services.cli.admin import db as db_cli

DAYS = 30


@pytest.fixture
def history(context: Context) -> Context:
    """Forty days of traffic (a tenth of it audited, half of those labelled)."""
    end = datetime.now(UTC) - timedelta(seconds=5)
    gen = generate(n=4000, start=end - timedelta(days=40), end=end, seed=11, audit_rate=0.1)
    seed_small_tables(context.engine, gen.changes)
    load(context.engine, gen, prices(context.settings), first=False)
    return context


def _kept_cells(session: Any) -> dict[str, Any]:
    """Every hourly and daily roll-up row (what the policy keeps)."""
    out = {}
    for table in (DecisionRollup, LatencyRollup, CostRollup):
        rows = session.execute(
            select(table)
            .where(table.grain_s != rollup.FINEST)
            .order_by(*table.__mapper__.primary_key)
        ).scalars()
        out[table.__tablename__] = [
            {c.key: getattr(r, c.key) for c in table.__table__.columns} for r in rows
        ]
    return out


def _figures(session: Any, now: datetime) -> dict[str, Any]:
    window = series.make_window(end=now, span_s=90 * 86400)  # daily slots
    old = [i for i, (_, b) in enumerate(window.slots) if b <= now - timedelta(days=DAYS + 1)]
    decisions = series.decision_series(session, window=window)
    sketches = series.latency_sketches(session, window=window)
    ledger = series.ledger_series(session, window=window)
    return {
        "decided": [decisions["decided"][i] for i in old],
        "human": [decisions["human"][i] for i in old],
        "sketches": [sketches[i] for i in old],
        "dollars": [round(ledger["stage1_dollars"][i], 9) for i in old],
        "slots": len(old),
    }


def test_prune_keeps_rollups_audits_and_labels(history: Context, tmp_path: Any) -> None:
    now = datetime.now(UTC)
    cutoff = retention.cutoff_for(DAYS, now)
    # Two of the old images have real blobs (original and derivative).
    with history.sessions() as session:
        old_subs = session.scalars(retention.prunable(cutoff).limit(2)).all()
        for sub in old_subs:
            _, key = history.blobs.put(f"image of {sub.id}".encode())
            history.blobs.put_derivative(sub.image_sha256, b"pixels")
            session.execute(update(Image).where(Image.sha256 == sub.image_sha256)
                            .values(blob_key=key))  # fmt: skip
        session.commit()
        blob_keys = [session.get(Image, s.image_sha256).blob_key for s in old_subs]  # type: ignore[union-attr]
        expected = retention.count_prunable(session, cutoff)
        kept_audits = session.scalar(select(func.count()).where(Submission.audit.is_(True)))
        items = session.scalar(select(func.count()).select_from(ReviewItem))
        cells, figures = _kept_cells(session), _figures(session, now)
    assert expected > 500 and figures["slots"] >= 5 and sum(figures["decided"]) > 0

    report = retention.prune(history.sessions, cutoff=cutoff, delete_blob=history.blobs.delete,
                             archive=tmp_path / "archive", chunk=700)  # fmt: skip

    assert report.submissions == expected
    assert report.images == expected  # one image each, none shared with a kept submission
    assert report.blobs == 4  # the two originals and their derivatives; the rest never existed
    assert all(not history.blobs.exists(k) for k in blob_keys)
    with history.sessions() as session:
        assert retention.count_prunable(session, cutoff) == 0
        assert session.scalar(select(func.count()).where(Submission.audit.is_(True))) == kept_audits
        assert session.scalar(select(func.count()).select_from(ReviewItem)) == items
        old = select(func.count()).where(Submission.created_at < cutoff)
        assert session.scalar(old) == session.scalar(old.where(Submission.audit.is_(True)))
        assert session.scalar(select(func.count()).where(CostLedger.minute < cutoff)) == 0
        assert _kept_cells(session) == cells  # hourly and daily roll-ups untouched
        assert _figures(session, now) == figures  # the dashboard over pruned days: unchanged
    with gzip.open(report.archive, "rt") as f:  # type: ignore[arg-type]
        archived = [json.loads(line) for line in f]
    assert len(archived) == expected and all(not r["audit"] for r in archived)


def test_prune_command_refuses_too_short_a_retention_and_counts_on_a_dry_run(
    history: Context,
) -> None:
    runner = CliRunner()
    short = runner.invoke(db_cli, ["prune", "--days", "3"], obj=history.settings)
    assert short.exit_code != 0 and "at least 8 days" in short.output
    with history.sessions() as session:
        expected = retention.count_prunable(session, retention.cutoff_for(DAYS))
    dry = runner.invoke(db_cli, ["prune", "--dry-run"], obj=history.settings)
    assert dry.exit_code == 0 and f"{expected:,} submissions" in dry.output
    real = runner.invoke(db_cli, ["prune"], obj=history.settings)
    assert real.exit_code == 0 and f"pruned {expected:,} submissions" in real.output


def test_prune_rolls_up_what_it_deletes(history: Context) -> None:
    """Decisions corrected but not yet rolled up (beat's sweep has not run) are rolled up by
    the prune before their rows go, so the figures over pruned days still count them."""
    from cascade.decisions import finalize
    from cascade.policy import Decider, Outcome

    now = datetime.now(UTC)
    cutoff = retention.cutoff_for(DAYS, now)
    with history.sessions() as session:
        for sub in session.scalars(retention.prunable(cutoff).limit(25)):
            later = sub.decided_at + timedelta(hours=7)  # type: ignore[operator]
            flipped = Outcome.ALLOW if sub.decision == Outcome.BLOCK else Outcome.BLOCK
            finalize(sub, outcome=flipped, decider=Decider.HUMAN, at=later)
        session.commit()
        assert session.scalar(select(func.count()).where(rollup.unrolled())) == 25
        figures = _figures(session, now)
    retention.prune(history.sessions, cutoff=cutoff)
    with history.sessions() as session:
        assert session.scalar(select(func.count()).where(rollup.unrolled())) == 0
        assert _figures(session, now) == figures
