"""Threshold sets in the database: propose, activate, roll back, reject.

Exactly one set is in force at a time: the single row with status ``active``, or, when there is
none, :data:`cascade.policy.DEFAULT_THRESHOLDS` (version 0). Workers poll the active row every
few seconds, so writing it correctly is all a rollout needs. Changes of status take a
transaction-scoped advisory lock on PostgreSQL (SQLite serialises writers by itself), so two
admins activating at once cannot leave two active rows.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from cascade.db.schema import ThresholdSetRow, ThresholdStatus, utcnow
from cascade.errors import Conflict, NotFound
from cascade.policy import DEFAULT_THRESHOLDS, ThresholdSet
from cascade.thresholds import active_row, load_active, thresholds_of
from feedback.costs import StageCosts
from feedback.optimise import Optimum

_LOCK_KEY = 0x7468_7265  # "thre"


def _lock(session: Session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})


active_thresholds = load_active  # the set in force (one definition, shared with the workers)


def list_rows(session: Session, *, limit: int | None = None) -> list[ThresholdSetRow]:
    """Threshold sets, newest first."""
    q = select(ThresholdSetRow).order_by(ThresholdSetRow.version.desc())
    return list(session.scalars(q if limit is None else q.limit(limit)))


def get_row(session: Session, version: int) -> ThresholdSetRow:
    row = session.get(ThresholdSetRow, version)
    if row is None:
        raise NotFound(f"no threshold set version {version}")
    return row


def certificate_of(optimum: Optimum) -> dict[str, Any]:
    """What the certificate says about the chosen set, in plain numbers for the record."""
    need = optimum.need
    return {
        "design": optimum.design,
        "n_order_samples": optimum.n_order_samples,
        "sequence_length": optimum.sequence_length,
        "miss_level": optimum.level,
        "beta": optimum.beta,
        "false_block_level": optimum.false_block_level,
        "false_block_bound": optimum.false_block_bound,
        "miss_interval": list(optimum.miss_interval) if optimum.miss_interval else None,
        "false_block_interval": (
            list(optimum.false_block_interval) if optimum.false_block_interval else None
        ),
        "need": need.as_dict() if need else None,
    }


def propose(
    session: Session,
    optimum: Optimum,
    costs: StageCosts,
    *,
    by: str,
    reason: str,
    window: dict[str, Any] | None = None,
) -> ThresholdSetRow:
    """Store the optimiser's choice as a proposed set, with everything needed to audit it:
    the certificate and the audit ``window`` it was certified on (the drift guard's
    reference)."""
    _lock(session)
    version = int(session.scalar(select(func.max(ThresholdSetRow.version))) or 0) + 1
    ts = optimum.thresholds
    est = optimum.estimate
    details: dict[str, Any] = {
        "certified": optimum.certified,
        "fallback": optimum.fallback,
        "kept": optimum.kept,
        "challenger": optimum.comparison.as_dict() if optimum.comparison else None,
        "note": optimum.note,
        "level": optimum.level,
        "n_bound_samples": optimum.n_bound_samples,
        "n_certified": optimum.n_certified,
        "estimate": est.as_dict() if est else None,
        "costs": costs.as_dict(),
        "certificate": certificate_of(optimum),
        "window": window,
        "history": [_event("proposed", by)],
    }
    row = ThresholdSetRow(
        version=version,
        t1_lo=ts.t1_lo,
        t1_hi=ts.t1_hi,
        t2_lo=ts.t2_lo,
        t2_hi=ts.t2_hi,
        status=ThresholdStatus.PROPOSED,
        created_by=by,
        reason=reason,
        expected_cost=est.cost if est else None,
        miss_rate_bound=optimum.miss_rate_bound,
        alpha=optimum.alpha,
        delta=optimum.delta,
        n_samples=optimum.n_samples,
        details=details,
    )
    session.add(row)
    session.flush()
    return row


DRIFT_REASON = "drift guard"


def last_drift_alarm(session: Session) -> datetime | None:
    """When the drift guard last tightened (its set's creation time), if ever."""
    return session.scalar(
        select(func.max(ThresholdSetRow.created_at)).where(
            ThresholdSetRow.reason.startswith(DRIFT_REASON)
        )
    )


def tighten_for_drift(
    session: Session, active: ThresholdSetRow, drift: dict[str, Any], *, by: str
) -> ThresholdSetRow:
    """Put in force, at once, a set that allows nothing automatically and keeps the active
    set's block thresholds; the row records why (the guard's report). Its miss rate is zero
    by construction whatever the traffic does, until a retune on audit labels collected after
    this alarm certifies a set again."""
    _lock(session)
    version = int(session.scalar(select(func.max(ThresholdSetRow.version))) or 0) + 1
    row = ThresholdSetRow(
        version=version, t1_lo=0.0, t1_hi=active.t1_hi, t2_lo=0.0, t2_hi=active.t2_hi,
        status=ThresholdStatus.PROPOSED, created_by=by,
        reason=f"{DRIFT_REASON}: {drift.get('reason', 'drift')}", miss_rate_bound=0.0,
        alpha=active.alpha, delta=active.delta, n_samples=0,
        details={"certified": False, "fallback": True, "drift": drift,
                 "tightened_from": active.version, "history": [_event("proposed", by)]},
    )  # fmt: skip
    session.add(row)
    session.flush()
    activate(session, version, by=by)
    return row


def activate(session: Session, version: int, *, by: str) -> ThresholdSet:
    """Put ``version`` in force (0: the built-in defaults), retiring the one before."""
    _lock(session)
    target = None if version == 0 else get_row(session, version)
    if target is not None and target.status == ThresholdStatus.REJECTED:
        raise Conflict(f"version {version} was rejected; run a new retune instead")
    current = active_row(session)
    if current is not None and current is not target:
        _set_status(current, ThresholdStatus.RETIRED, by, "retired")
    if target is not None and target.status != ThresholdStatus.ACTIVE:
        target.activated_at, target.activated_by = utcnow(), by
        _set_status(target, ThresholdStatus.ACTIVE, by, "activated")
    session.flush()
    return thresholds_of(target)


def rollback(session: Session, *, by: str) -> ThresholdSet:
    """Re-activate the set in force before the current one; the current one is rejected.

    "Before" is the most recently retired set that was once active (the defaults if none).
    """
    _lock(session)
    current = active_row(session)
    previous = session.scalar(
        select(ThresholdSetRow)
        .where(
            ThresholdSetRow.status == ThresholdStatus.RETIRED,
            ThresholdSetRow.activated_at.is_not(None),
        )
        .order_by(ThresholdSetRow.retired_at.desc(), ThresholdSetRow.version.desc())
        .limit(1)
    )
    if current is None and previous is None:
        raise Conflict("nothing to roll back: the defaults are in force and nothing came before")
    if current is not None:
        _set_status(current, ThresholdStatus.REJECTED, by, "rolled back")
    if previous is not None:
        previous.activated_at, previous.activated_by = utcnow(), by
        _set_status(previous, ThresholdStatus.ACTIVE, by, "re-activated by rollback")
    session.flush()
    return thresholds_of(previous)


def reject(session: Session, version: int, *, by: str) -> ThresholdSetRow:
    """Mark a proposed (or retired) set as not to be used."""
    _lock(session)
    row = get_row(session, version)
    if row.status == ThresholdStatus.ACTIVE:
        raise Conflict(f"version {version} is active; roll it back instead")
    _set_status(row, ThresholdStatus.REJECTED, by, "rejected")
    session.flush()
    return row


def _event(what: str, by: str) -> dict[str, str]:
    return {"event": what, "by": by, "at": utcnow().isoformat()}


def _set_status(row: ThresholdSetRow, status: ThresholdStatus, by: str, event: str) -> None:
    if status != ThresholdStatus.ACTIVE and row.status == ThresholdStatus.ACTIVE:
        row.retired_at = utcnow()
    row.status = status
    details = dict(row.details or {})
    details["history"] = [*details.get("history", []), _event(event, by)]
    row.details = details  # a new dict: JSON columns do not track in-place changes


def row_as_dict(row: ThresholdSetRow) -> dict[str, Any]:
    """A row with its provenance, for the API and the CLI."""
    return {
        "version": row.version,
        "thresholds": {
            "t1_lo": row.t1_lo,
            "t1_hi": row.t1_hi,
            "t2_lo": row.t2_lo,
            "t2_hi": row.t2_hi,
        },
        "status": row.status,
        "created_by": row.created_by,
        "reason": row.reason,
        "created_at": _iso(row.created_at),
        "activated_at": _iso(row.activated_at),
        "activated_by": row.activated_by,
        "retired_at": _iso(row.retired_at),
        "expected_cost": row.expected_cost,
        "miss_rate_bound": row.miss_rate_bound,
        "alpha": row.alpha,
        "delta": row.delta,
        "n_samples": row.n_samples,
        "details": row.details,
    }


def default_as_dict() -> dict[str, Any]:
    """Version 0, the built-in defaults, in the same shape as a row."""
    ts = DEFAULT_THRESHOLDS
    return {
        "version": 0,
        "thresholds": {"t1_lo": ts.t1_lo, "t1_hi": ts.t1_hi, "t2_lo": ts.t2_lo, "t2_hi": ts.t2_hi},
        "status": "active",
        "created_by": "built-in",
        "reason": "defaults in force until a threshold set is activated",
    }


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at else None
