"""Final decisions and human labels: the one place where a submission's outcome is set.

Every function here is idempotent (a redelivered message or a double click changes nothing
twice) and returns whether a callback is now due; callers enqueue callbacks after commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import Table, bindparam, insert, select
from sqlalchemy.orm import Session

from cascade import metrics
from cascade.config import Settings
from cascade.cost import record_error
from cascade.db.schema import (
    LabelledError,
    ReviewItem,
    ReviewReason,
    ReviewState,
    State,
    Submission,
    utcnow,
)
from cascade.policy import Decider, Outcome


def finalize(
    sub: Submission, *, outcome: Outcome, decider: Decider, at: datetime | None = None
) -> bool:
    """Make ``outcome`` the submission's decision. Returns True when it changed (callback due)."""
    if sub.state == State.DECIDED and sub.decision == outcome:
        return False
    sub.decision = str(outcome)
    sub.decided_by = str(decider)
    sub.state = State.DECIDED
    sub.decided_at = at or utcnow()
    sub.error = None
    if decider in (Decider.STAGE1, Decider.STAGE2):
        sub.auto_decision = str(outcome)
    if sub.callback_url:
        sub.callback_sent_at = None  # (re)send: a corrected decision is news to the caller
    return bool(sub.callback_url)


# Built once (a stage batch runs both): building a statement cost more than running it.
_REVIEWED = select(ReviewItem.__table__.c.submission_id).where(
    ReviewItem.__table__.c.submission_id.in_(bindparam("ids", expanding=True))
)
_NEW_REVIEWS = insert(cast(Table, ReviewItem.__table__))


@dataclass(frozen=True)
class ReviewRequest:
    """A submission that needs a review item, and why."""

    submission: Submission
    reason: ReviewReason
    labels_required: int = 1


def open_reviews(
    session: Session, requests: Sequence[ReviewRequest], *, at: datetime | None = None
) -> int:
    """The review items of a whole batch, each created once: one look-up for those that exist
    already (a redelivered batch), one bulk insert for the rest. Escalations wait on a human
    (the submission goes to ``review``); audits don't. Returns how many were created."""
    ids = [r.submission.id for r in requests]
    if not ids:
        return 0
    at = at or utcnow()
    exists = set(session.scalars(_REVIEWED, {"ids": ids}))
    rows: list[dict[str, object]] = []
    for req in requests:
        if req.submission.id in exists:
            continue
        exists.add(req.submission.id)
        # Escalations (and images sent to a human as out of distribution) are ordered by
        # waiting time; audits are interleaved behind them.
        rows.append(
            {
                "submission_id": req.submission.id,
                "reason": str(req.reason),
                "priority": 1 if req.reason == ReviewReason.AUDIT else 0,
                "labels_required": req.labels_required,
                "created_at": at,
            }
        )
        metrics.REVIEW_ITEMS.labels(reason=str(req.reason)).inc()
        if req.reason != ReviewReason.AUDIT:
            req.submission.state = State.REVIEW
    if rows:
        session.execute(_NEW_REVIEWS, rows)  # one statement, no ids read back
    return len(rows)


def open_review(
    session: Session,
    sub: Submission,
    *,
    reason: ReviewReason,
    labels_required: int = 1,
    at: datetime | None = None,
) -> ReviewItem:
    """The submission's review item, created once (``open_reviews`` for one submission)."""
    open_reviews(session, [ReviewRequest(sub, reason, labels_required)], at=at)
    return session.scalars(select(ReviewItem).where(ReviewItem.submission_id == sub.id)).one()


def error_kind(auto: str | None, label: Outcome) -> str | None:
    """What kind of automatic error a human label reveals, if any."""
    if auto == Outcome.ALLOW and label == Outcome.BLOCK:
        return "miss"
    if auto == Outcome.BLOCK and label == Outcome.ALLOW:
        return "false_block"
    return None


def apply_human_label(
    session: Session,
    item: ReviewItem,
    label: Outcome,
    settings: Settings,
    *,
    at: datetime | None = None,
) -> bool:
    """Apply the final human label of a review item (after agreement or an admin's ruling).

    Escalation: the label is the decision. Audit: the automatic decision stands unless the
    label contradicts it; then the error is recorded (for the feedback service and the
    ledger) and the decision corrected. Returns True when a callback is due.
    """
    at = at or utcnow()
    sub = item.submission
    item.final_label = str(label)
    item.state = ReviewState.DONE
    item.done_at = at
    item.lease_owner = None
    item.lease_expires_at = None
    if item.reason == ReviewReason.AUDIT and sub.auto_decision is not None:
        kind = error_kind(sub.auto_decision, label)
        if kind is None:
            return False
        exists = session.scalars(
            select(LabelledError).where(
                LabelledError.submission_id == sub.id, LabelledError.source == "audit"
            )
        ).first()
        if exists is None:
            session.add(
                LabelledError(
                    submission_id=sub.id,
                    kind=kind,
                    source="audit",
                    threshold_version=sub.threshold_version,
                    created_at=at,
                )
            )
            record_error(session, kind=kind, settings=settings, at=at)
    due = finalize(sub, outcome=label, decider=Decider.HUMAN, at=at)
    if item.reason != ReviewReason.AUDIT:  # an audit label does not decide the image again
        metrics.observe_decision(
            route=str(label), decider="human",
            latency_seconds=(at - sub.created_at).total_seconds(),
        )  # fmt: skip
    return due
