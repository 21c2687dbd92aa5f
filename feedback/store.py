"""Loading what the statistics need from the database: the audit sample, measured compute
cost, traffic, scores for drift, and labelled errors. Keyword-only, a session passed in."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cascade.config import Settings
from cascade.db.schema import (
    BatchRecord,
    LabelledError,
    ReviewItem,
    ReviewState,
    State,
    Submission,
)
from cascade.errors import BadRequest, Conflict, NotFound
from feedback.sample import AuditSample

log = logging.getLogger(__name__)

ERROR_KINDS = ("miss", "false_block")
REPORT_SOURCES = ("appeal", "report")


def _labelled() -> Any:
    """Audited submissions that have their human allow/block label (a done review item)."""
    return (
        select(ReviewItem.id)
        .where(
            ReviewItem.submission_id == Submission.id,
            ReviewItem.state == ReviewState.DONE,
            ReviewItem.final_label.in_(("allow", "block")),
        )
        .exists()
    )


def load_audit_sample(
    session: Session, *, since: datetime | None = None, until: datetime | None = None
) -> AuditSample:
    """Audited submissions created in ``[since, until)`` with both scores and a human
    allow/block label, in the order they came in (the drift guard's order).

    Rows without a recorded sampling probability cannot be weighted and are left out.
    """
    q = (
        select(Submission.s1, Submission.s2, ReviewItem.final_label, Submission.audit_p)
        .join(ReviewItem, ReviewItem.submission_id == Submission.id)
        .where(
            Submission.audit.is_(True),
            Submission.s1.is_not(None),
            Submission.s2.is_not(None),
            Submission.audit_p > 0,
            ReviewItem.state == ReviewState.DONE,
            ReviewItem.final_label.in_(("allow", "block")),
        )
        .order_by(Submission.created_at, Submission.id)
    )
    if since is not None:
        q = q.where(Submission.created_at >= since)
    if until is not None:
        q = q.where(Submission.created_at < until)
    rows = session.execute(q).all()
    if not rows:
        return AuditSample.of([], [], [], [])
    s1, s2, label, p = zip(*rows, strict=True)
    return AuditSample.of(s1, s2, [lab == "block" for lab in label], np.asarray(p))


def complete_until(session: Session, *, since: datetime) -> datetime | None:
    """Where the complete audit window ends: the creation time of the oldest audited
    submission since ``since`` still waiting for its label (None: every one is labelled).

    The rule: a retune (and the drift guard) uses only audit images created before this time,
    so that every audit image of its window is in its sample. Labels arrive sooner for some
    routes than for others (escalations are labelled at once, audits of automatic decisions
    wait in the queue); a window with holes would be short of exactly the images the cascade
    decided alone, where misses hide. Submissions that ended in error are not part of the
    decided traffic and do not hold the window open.
    """
    # The first in creation order, not min(): the walk along ix_submissions_audit_sample stops
    # at the first unlabelled audit instead of visiting every audit since ``since``.
    return session.scalar(
        select(Submission.created_at)
        .where(
            Submission.audit.is_(True),
            Submission.created_at >= since,
            Submission.state != State.ERROR,
            ~_labelled(),
        )
        .order_by(Submission.created_at)
        .limit(1)
    )


def measured_dollars_per_image(
    session: Session, settings: Settings, *, since: datetime | None = None
) -> dict[str, float]:
    """Compute $ per image of each stage from the batches workers recorded (empty if none)."""
    q = select(
        BatchRecord.stage,
        BatchRecord.device,
        func.sum(BatchRecord.device_seconds),
        func.sum(BatchRecord.size),
    ).group_by(BatchRecord.stage, BatchRecord.device)
    if since is not None:
        q = q.where(BatchRecord.created_at >= since)
    dollars: dict[str, float] = {}
    images: dict[str, int] = {}
    for stage, device, seconds, size in session.execute(q):
        try:
            price = settings.device_price(device)
        except ValueError:
            log.warning("batches on device %r have no configured price; left out", device)
            continue
        dollars[stage] = dollars.get(stage, 0.0) + float(seconds or 0.0) * price / 3600.0
        images[stage] = images.get(stage, 0) + int(size or 0)
    return {stage: dollars[stage] / images[stage] for stage in dollars if images[stage] > 0}


def traffic_per_hour(session: Session, *, since: datetime, until: datetime) -> float:
    """Submissions per hour accepted in ``[since, until)``.

    Every state is named so that ``ix_submissions_state_created`` answers with one range of
    creation times per state (no index leads with ``created_at`` alone)."""
    hours = (until - since).total_seconds() / 3600.0
    count = session.scalar(
        select(func.count()).where(
            Submission.state.in_(list(State)),
            Submission.created_at >= since,
            Submission.created_at < until,
        )
    )
    return float(count or 0) / hours if hours > 0 else 0.0


def decided_images(session: Session, *, since: datetime, until: datetime) -> int:
    return int(
        session.scalar(
            select(func.count(Submission.id)).where(
                Submission.decided_at >= since, Submission.decided_at < until
            )
        )
        or 0
    )


def stage1_scores(
    session: Session, *, since: datetime, until: datetime, limit: int = 200_000
) -> np.ndarray:
    """Stage-1 scores of submissions created in ``[since, until)`` (the most recent ``limit``)."""
    q = (
        select(Submission.s1)
        .where(
            Submission.s1.is_not(None),
            Submission.created_at >= since,
            Submission.created_at < until,
        )
        .order_by(Submission.created_at.desc())
        .limit(limit)
    )
    return np.asarray(session.scalars(q).all(), dtype=np.float64)


def count_errors(session: Session, *, since: datetime, until: datetime) -> dict[str, int]:
    """Labelled errors per kind (every source) created in ``[since, until)``."""
    q = (
        select(LabelledError.kind, func.count(LabelledError.id))
        .where(LabelledError.created_at >= since, LabelledError.created_at < until)
        .group_by(LabelledError.kind)
    )
    counts = {kind: 0 for kind in ERROR_KINDS}
    counts.update({kind: int(n) for kind, n in session.execute(q)})
    return counts


def report_error(
    session: Session,
    *,
    submission_id: str,
    kind: str,
    source: str,
    note: str | None = None,
    tenant_id: int | None = None,
) -> tuple[LabelledError, bool]:
    """Store an appeal or user report against a decided submission; ``(row, created)``.

    Reporting the same submission from the same source again is idempotent; a different kind
    from the same source is a conflict. A miss must concern an allowed image, a false block a
    blocked one.
    """
    if kind not in ERROR_KINDS:
        raise BadRequest(f"kind must be one of {', '.join(ERROR_KINDS)}; got {kind!r}")
    if source not in REPORT_SOURCES:
        raise BadRequest(f"source must be one of {', '.join(REPORT_SOURCES)}; got {source!r}")
    sub = session.get(Submission, submission_id)
    if sub is None or (tenant_id is not None and sub.tenant_id != tenant_id):
        raise NotFound(f"no submission {submission_id!r}")
    expected = "allow" if kind == "miss" else "block"
    if sub.decision != expected:
        raise BadRequest(
            f"a {kind} concerns an image decided {expected!r}; this one is {sub.decision!r}"
        )
    existing = session.scalar(
        select(LabelledError).where(
            LabelledError.submission_id == submission_id, LabelledError.source == source
        )
    )
    if existing is not None:
        if existing.kind != kind:
            raise Conflict(f"this {source} was already reported as a {existing.kind}")
        return existing, False
    row = LabelledError(
        submission_id=submission_id,
        kind=kind,
        source=source,
        note=note,
        threshold_version=sub.threshold_version,
    )
    session.add(row)
    session.flush()
    return row, True
