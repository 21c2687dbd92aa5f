"""The retune's loading path at depth: the audit sample and the end of its complete window are
read along ``ix_submissions_audit_sample`` (audited rows only, in creation order) with one probe of
``ix_review_submission_label`` per row; traffic is counted from ``ix_submissions_state_created``.
On PostgreSQL sequential scans are switched off for the check: the test proves an index path
exists (at ten thousand rows a scan may be the planner's honest choice; at ten million it is
not — the benchmark measures that)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select, text

from cascade.context import Context
from cascade.db.schema import ReviewItem, Submission, utcnow
from feedback import store
from feedback.retune import audit_windows
from tests.scale.plans import captured, full_scans, uses
from tests.scale.test_queue_plans import deep_queue

__all__ = ["deep_queue"]


def test_audit_sample_and_window_read_indexes(deep_queue: Context) -> None:
    now = utcnow()
    with deep_queue.sessions() as session:
        if deep_queue.engine.dialect.name == "postgresql":
            session.execute(text("SET enable_seqscan = off"))
        with captured(deep_queue.engine) as plans:
            windows = audit_windows(session, now)
            sample = store.load_audit_sample(session, since=windows.since, until=windows.until)
            traffic = store.traffic_per_hour(session, since=now - timedelta(days=1), until=now)
        waiting = session.scalars(
            select(Submission.created_at)
            .join(ReviewItem, ReviewItem.submission_id == Submission.id)
            .where(ReviewItem.state == "pending")
            .order_by(Submission.created_at)
        ).first()
        recent = session.scalars(
            select(Submission.id).where(Submission.created_at >= now - timedelta(days=1))
        ).all()
    assert windows.until == waiting  # the first audit still waiting for its label
    assert len(sample.s1) > 1000
    assert traffic * 24 == len(recent)
    # No table is read whole. (PostgreSQL may hash-join the labels and sort the sample by
    # creation time rather than walk it in order: a sort of the rows it returns, not a scan.)
    assert full_scans(plans, ("submissions", "review_items"), sorts=False) == []


def test_the_callback_sweep_reads_only_the_callbacks_owed(deep_queue: Context) -> None:
    from cascade.dispatch import Dispatcher
    from cascade.maintenance import requeue_stale

    class Sent(Dispatcher):
        def __init__(self) -> None:
            self.sent: list[Any] = []

        def send_after_commit(self, sends: Any) -> None:  # type: ignore[override]
            self.sent += list(sends)

    with captured(deep_queue.engine) as plans:
        requeue_stale(deep_queue, Sent(), 60)
    assert full_scans(plans, ("submissions",), small_indexes=("ix_submissions_callback_due",)) == []
    assert uses(plans, "ix_submissions_callback_due", only=False)
