"""The review queue at depth: next item and lease read indexes only — no table scan, no sort —
with thousands of items waiting (the plan does not change with depth; the benchmark measures a
million). Data: the scale benchmark's own loader, a tenth of it waiting for review."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from cascade.context import Context
from cascade.db.schema import ReviewItem
from cascade.review import claim_next
from services.bench.scale_data import generate
from services.bench.scale_db import prices, seed_small_tables
from services.bench.scale_load import load
from services.review.stats import queue_counts
from tests.scale.plans import analyze, captured, full_scans, uses

TABLES = ("review_items", "labels")


@pytest.fixture
def deep_queue(context: Context) -> Context:
    end = datetime.now(UTC) - timedelta(seconds=5)
    gen = generate(n=10_000, start=end - timedelta(days=3), end=end, seed=5, audit_rate=0.5)
    seed_small_tables(context.engine, gen.changes)
    load(context.engine, gen, prices(context.settings), first=False)
    analyze(context.engine)
    return context


@pytest.mark.parametrize("audit_turn", [False, True])
def test_next_item_and_lease_read_indexes_only(deep_queue: Context, audit_turn: bool) -> None:
    every = 1 if audit_turn else 0  # 1: every claim is an audit's turn
    with deep_queue.sessions() as session, captured(deep_queue.engine) as plans:
        item = claim_next(session, user_id=3, lease_s=60, audit_every=every)
        session.commit()
    assert item is not None and item.lease_owner == 3 and item.state == "pending"
    with deep_queue.sessions() as session:
        first = session.scalars(
            select(ReviewItem.id)
            .where(ReviewItem.state == "pending")
            .order_by(ReviewItem.priority, ReviewItem.created_at, ReviewItem.id)
        ).first()
    assert item.id == first  # the head of the queue, as the order says
    assert full_scans(plans, TABLES) == []
    assert uses(plans, "ix_review_queue_reason" if audit_turn else "ix_review_queue")
    # "Not labelled by me": one probe of the unique (review_item_id, user_id) index per item.
    text = " ".join(p.plan for p in plans)
    assert "(review_item_id=? AND user_id=?)" in text or "uq_label_once" in text


def test_a_held_item_comes_back_from_the_lease_index(deep_queue: Context) -> None:
    with deep_queue.sessions() as session:
        first = claim_next(session, user_id=4, lease_s=60, audit_every=0)
        session.commit()
    with deep_queue.sessions() as session, captured(deep_queue.engine) as plans:
        again = claim_next(session, user_id=4, lease_s=60, audit_every=0)
        session.commit()
    assert first is not None and again is not None and again.id == first.id
    assert full_scans(plans, TABLES) == []
    # The one held row is found by the lease index (PostgreSQL then reads that row for its id).
    assert uses(plans, "ix_review_lease_owner", only=False)


def test_queue_counts_do_not_count_the_items(deep_queue: Context) -> None:
    with deep_queue.sessions() as session, captured(deep_queue.engine) as plans:
        counts = queue_counts(session, datetime.now(UTC))
    with deep_queue.sessions() as session:
        waiting = session.scalars(select(ReviewItem.reason).where(ReviewItem.state == "pending"))
        expected = list(waiting)
    assert counts["audit"] == expected.count("audit") > 1000
    # The counts come from the trigger-kept backlog (a few rows); the items are not read whole.
    assert full_scans(plans, TABLES, sorts=False) == []
    assert any("review_backlog" in p.statement for p in plans)
