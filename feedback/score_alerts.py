"""The score-drift alert job: PSI of recent stage-1 scores against a reference window."""

from __future__ import annotations

import logging
from datetime import timedelta

from cascade.context import Context
from cascade.db.schema import utcnow
from cascade.db.session import session_scope
from feedback import store
from feedback.metrics import ALERTS, SCORE_PSI
from feedback.signals import DriftCheck, check_drift

log = logging.getLogger(__name__)


def check_score_drift(
    context: Context,
    *,
    recent: timedelta = timedelta(days=1),
    reference: timedelta = timedelta(days=7),
) -> DriftCheck | None:
    """PSI of stage-1 scores, the last ``recent`` against the ``reference`` before it."""
    now = utcnow()
    with session_scope(context.sessions) as session:
        new = store.stage1_scores(session, since=now - recent, until=now)
        old = store.stage1_scores(session, since=now - recent - reference, until=now - recent)
    if new.size == 0 or old.size == 0:
        log.info("drift check skipped: no scores in one of the windows")
        return None
    check = check_drift(old, new)
    SCORE_PSI.set(check.psi)
    if check.alert:
        ALERTS.labels(kind="drift").inc()
        log.warning(
            "stage-1 score drift: PSI=%.3f over %d recent images", check.psi, check.recent_n
        )
    return check
