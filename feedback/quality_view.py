"""What the dashboard shows about decision quality: images sent to a human because they look
like nothing the models were trained on, the certificate of the set in force, and the drift
guard's last alarm. Read-only queries over a session; plain dicts for JSON."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cascade.db.schema import ReviewItem, ReviewReason, Submission, ThresholdSetRow
from cascade.thresholds import active_row
from feedback import rollout


def ood_counts(session: Session, *, start: datetime, end: datetime) -> dict[str, Any]:
    """Images created in ``[start, end)`` and how many of them the OOD gate sent to a human."""
    images = session.scalar(
        select(func.count(Submission.id)).where(
            Submission.created_at >= start, Submission.created_at < end
        )
    )
    gated = session.scalar(
        select(func.count(ReviewItem.id))
        .join(Submission, Submission.id == ReviewItem.submission_id)
        .where(
            ReviewItem.reason == ReviewReason.OOD,
            Submission.created_at >= start,
            Submission.created_at < end,
        )
    )
    images, gated = int(images or 0), int(gated or 0)
    return {"images": images, "to_human": gated, "share": gated / images if images else None}


def certificate(row: ThresholdSetRow | None) -> dict[str, Any] | None:
    """The set in force's guarantee in plain numbers (None: the built-in defaults)."""
    if row is None:
        return None
    details = row.details or {}
    cert = details.get("certificate") or {}
    estimate = details.get("estimate") or {}
    return {
        "version": row.version,
        "certified": bool(details.get("certified")),
        "fallback": bool(details.get("fallback")),
        "alpha": row.alpha,
        "delta": row.delta,
        "beta": cert.get("beta"),
        "miss_rate_estimate": estimate.get("miss_rate"),
        "miss_interval": cert.get("miss_interval"),
        "false_block_rate_estimate": estimate.get("false_block_rate"),
        "false_block_interval": cert.get("false_block_interval"),
        "audit_images": row.n_samples,
        "design": cert.get("design"),
        "window": details.get("window"),
        "reason": row.reason,
    }


def decision_quality(session: Session, *, start: datetime, end: datetime) -> dict[str, Any]:
    """The dashboard's decision-quality panel."""
    alarm = rollout.last_drift_alarm(session)
    return {
        "ood": ood_counts(session, start=start, end=end),
        "certificate": certificate(active_row(session)),
        "last_drift_alarm": alarm.isoformat() if alarm else None,
    }
