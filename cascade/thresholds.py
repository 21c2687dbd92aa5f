"""The active threshold set, as workers and the API see it.

Workers poll the database (``ThresholdCache``, a short TTL) so an activation or a rollback
reaches every worker within seconds, without a restart and without a message bus of its own.
"""

from __future__ import annotations

import threading
import time

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from cascade.db.schema import ThresholdSetRow, ThresholdStatus
from cascade.policy import DEFAULT_THRESHOLDS, ThresholdSet


def thresholds_of(row: ThresholdSetRow | None) -> ThresholdSet:
    """The set a row describes; no row means the built-in defaults (version 0)."""
    if row is None:
        return DEFAULT_THRESHOLDS
    return ThresholdSet(row.t1_lo, row.t1_hi, row.t2_lo, row.t2_hi, version=row.version)


def active_row(session: Session) -> ThresholdSetRow | None:
    """The active row (the newest activation, should two ever be marked active)."""
    return session.scalars(
        select(ThresholdSetRow)
        .where(ThresholdSetRow.status == ThresholdStatus.ACTIVE)
        .order_by(ThresholdSetRow.activated_at.desc())
        .limit(1)
    ).first()


def load_active(session: Session) -> ThresholdSet:
    """The set in force: the active row, else the built-in defaults (version 0)."""
    return thresholds_of(active_row(session))


class ThresholdCache:
    """``get()`` returns the active set, re-reading the database at most every ``ttl_s``."""

    def __init__(self, sessions: sessionmaker[Session], ttl_s: float = 2.0) -> None:
        self._sessions = sessions
        self._ttl = ttl_s
        self._lock = threading.Lock()
        self._value: ThresholdSet | None = None
        self._loaded_at = 0.0

    def get(self) -> ThresholdSet:
        with self._lock:
            now = time.monotonic()
            if self._value is None or now - self._loaded_at >= self._ttl:
                with self._sessions() as session:
                    self._value = load_active(session)
                self._loaded_at = now
            return self._value
