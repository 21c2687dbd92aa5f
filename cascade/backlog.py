"""The review backlog — items per (state, reason) — read without counting the items.

Database triggers on ``review_items`` (migration 0005) append a +1/-1 row to
``review_backlog`` for every insert, state or reason change and delete, whichever code made it
(the ORM, a bulk insert, COPY, raw SQL). A count is the sum of a key's rows; ``compact``
(beat, every minute, with the roll-up sweep) folds each key's rows into one, so the sum stays a
few rows however many items wait. Appending never waits on another transaction, as a shared
counter row would. The oldest waiting item is one seek of ``ix_review_waiting_since``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, false, func, insert, select, text, update
from sqlalchemy.orm import Session

from cascade.db.schema import ReviewBacklog, ReviewItem


def counts(session: Session) -> dict[tuple[str, str], int]:
    """Review items per (state, reason), every state (zero counts left out)."""
    rows = session.execute(
        select(ReviewBacklog.state, ReviewBacklog.reason, func.sum(ReviewBacklog.delta)).group_by(
            ReviewBacklog.state, ReviewBacklog.reason
        )
    ).all()
    return {(state, reason): int(n) for state, reason, n in rows if n}


def oldest(session: Session, states: tuple[str, ...]) -> datetime | None:
    """When the oldest item in one of ``states`` was opened (None: there is none)."""
    firsts = [
        session.scalar(select(func.min(ReviewItem.created_at)).where(ReviewItem.state == state))
        for state in states
    ]
    return min((f for f in firsts if f is not None), default=None)


def compact(session: Session) -> int:
    """Fold each key's rows into one, in the caller's transaction; returns the rows folded.

    Only what is read and deleted here is folded: on PostgreSQL one statement deletes and
    re-inserts the sums of exactly the rows it deleted (a row another transaction has not
    committed yet is neither); SQLite holds its one write lock from the first statement on.
    """
    if session.get_bind().dialect.name == "postgresql":
        result = session.execute(_FOLD_POSTGRESQL)
        return int(result.scalar() or 0)
    session.execute(update(ReviewBacklog).where(false()).values(delta=0))  # the write lock
    rows = session.execute(
        select(ReviewBacklog.state, ReviewBacklog.reason, func.sum(ReviewBacklog.delta),
               func.count()).group_by(ReviewBacklog.state, ReviewBacklog.reason)
    ).all()  # fmt: skip
    folded = sum(int(n) for *_, n in rows)
    if folded == len(rows):
        return 0
    session.execute(delete(ReviewBacklog))
    sums = [{"state": s, "reason": r, "delta": int(d)} for s, r, d, _ in rows if d]
    if sums:
        session.execute(insert(ReviewBacklog), sums)
    return folded


_FOLD_POSTGRESQL = text(
    """WITH gone AS (DELETE FROM review_backlog RETURNING state, reason, delta),
    sums AS (SELECT state, reason, sum(delta) AS delta, count(*) AS n FROM gone
             GROUP BY state, reason),
    kept AS (INSERT INTO review_backlog (state, reason, delta)
             SELECT state, reason, delta FROM sums WHERE delta <> 0)
    SELECT coalesce(sum(n), 0) FROM sums"""
)
