"""The drift guard job: watch the audit labels that came after the active set's certification
window, and tighten at once when the certificate may no longer hold.

Thin: load the reference window and the new labels (complete ones only, in the order the images
came in), call :func:`feedback.drift.watch`, and on an alarm count it, log it, and put in force
a set that allows nothing automatically (:func:`feedback.rollout.tighten_for_drift`), its row
recording the guard's report. Retunes after that use only audit images created after the alarm
(:func:`feedback.retune.audit_windows`).
"""

from __future__ import annotations

import logging
from datetime import datetime

from cascade.context import Context
from cascade.db.schema import ThresholdSetRow, utcnow
from cascade.db.session import session_scope
from cascade.thresholds import active_row, thresholds_of
from feedback import rollout, store
from feedback.drift import DriftReport, watch
from feedback.metrics import ALERTS, DRIFT_EVIDENCE

log = logging.getLogger(__name__)


def _watched(row: ThresholdSetRow | None) -> tuple[datetime, datetime] | None:
    """The certification window of the set in force, when it has one worth guarding: a
    certified set that allows something automatically."""
    details = (row.details or {}) if row is not None else {}
    window = details.get("window")
    if row is None or not window or not details.get("certified") or details.get("fallback"):
        return None
    return datetime.fromisoformat(window["since"]), datetime.fromisoformat(window["until"])


def guard(context: Context) -> DriftReport | None:
    """Run the guard over everything labelled since the active set's window; None when there
    is nothing to guard (defaults, a fallback, or no new labels yet)."""
    settings = context.settings
    with session_scope(context.sessions) as session:
        row = active_row(session)
        window = _watched(row)
        if row is None or window is None:
            return None
        since, until = window
        reference = store.load_audit_sample(session, since=since, until=until)
        end = store.complete_until(session, since=until) or utcnow()
        new = store.load_audit_sample(session, since=until, until=end)
        if new.n == 0 or reference.n == 0:
            return None
        beta = (row.details.get("certificate") or {}).get("beta")
        report = watch(reference, new, thresholds_of(row), alpha=row.alpha or settings.alpha,
                       beta=beta, level=settings.drift_level)  # fmt: skip
        for alarm in report.alarms:
            DRIFT_EVIDENCE.labels(test=alarm.test).set(alarm.evalue)
        if report.fired_at is not None:
            tightened = rollout.tighten_for_drift(session, row, report.as_dict(), by="drift-guard")
            ALERTS.labels(kind="drift_guard").inc()
            log.warning("v%d tightened to v%d: %s", row.version, tightened.version, report.reason())
    return report
