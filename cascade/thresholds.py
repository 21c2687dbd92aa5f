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


def row_to_set(row: ThresholdSetRow) -> ThresholdSet:
    return ThresholdSet(row.t1_lo, row.t1_hi, row.t2_lo, row.t2_hi, version=row.version)


def load_active(session: Session) -> ThresholdSet:
    """The active set, or the built-in default (version 0) when none was ever activated."""
    row = session.scalars(
        select(ThresholdSetRow)
        .where(ThresholdSetRow.status == ThresholdStatus.ACTIVE)
        .order_by(ThresholdSetRow.activated_at.desc())
        .limit(1)
    ).first()
    return row_to_set(row) if row is not None else DEFAULT_THRESHOLDS


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
