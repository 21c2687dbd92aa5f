"""The labelled-error alert job: compare errors reported in a window with what the threshold set
in force predicts; alert, and retune tighten-only, when they exceed it."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from cascade.context import Context
from cascade.db.schema import utcnow
from cascade.db.session import session_scope
from feedback import rollout, store
from feedback.costs import stage_costs
from feedback.estimate import estimate
from feedback.metrics import ALERTS
from feedback.retune import AUDIT_LOOKBACK, retune
from feedback.signals import ErrorCheck, check_error_count

log = logging.getLogger(__name__)


def predicted_rates(context: Context) -> dict[str, float]:
    """Error rates the set in force is expected to make (its stored estimate, else estimated
    now on the audit sample, else the miss-rate bound alpha it is meant to respect)."""
    with session_scope(context.sessions) as session:
        row = rollout.active_row(session)
        est = (row.details or {}).get("estimate") if row is not None else None
        if est:
            return {"miss": est["miss_rate"], "false_block": est["false_block_rate"]}
        sample = store.load_audit_sample(session, since=utcnow() - AUDIT_LOOKBACK)
        ts = rollout.thresholds_of(row)
    if sample.n:
        e = estimate(sample, ts, stage_costs(context.settings))
        return {"miss": e.miss_rate, "false_block": e.false_block_rate}
    return {"miss": context.settings.alpha}


ERROR_RETUNE_REASON = "labelled errors above prediction"


def _error_retune_since(context: Context, since: datetime) -> bool:
    with session_scope(context.sessions) as session:
        return any(
            row.created_at >= since and row.reason.startswith(ERROR_RETUNE_REASON)
            for row in rollout.list_rows(session, limit=20)
        )


def check_errors(
    context: Context, *, window: timedelta | None = None, retune_on_alert: bool = True
) -> list[ErrorCheck]:
    """Compare labelled errors of the last window with the prediction; alert and retune
    (tighten-only) when they exceed it — once per window, although the check runs more often.

    Errors are counted by when they were reported, images by when they were decided: in a
    steady state both rates describe the same traffic (appeals lag, so this is an alarm, not
    an estimate)."""
    window = window or timedelta(seconds=context.settings.retune_interval_s)
    now = utcnow()
    with session_scope(context.sessions) as session:
        counts = store.count_errors(session, since=now - window, until=now)
        images = store.decided_images(session, since=now - window, until=now)
    rates = predicted_rates(context)
    checks = [
        check_error_count(kind, counts[kind], images, rates[kind])
        for kind in counts
        if kind in rates
    ]
    alerts = [c for c in checks if c.alert]
    for c in alerts:
        ALERTS.labels(kind=c.kind).inc()
        log.warning(
            "labelled %s errors above prediction: %d observed, %.2f expected over %d images "
            "(p=%.2g)", c.kind, c.observed, c.expected, c.images, c.p_value,
        )  # fmt: skip
    if alerts and retune_on_alert and not _error_retune_since(context, now - window):
        kinds = ", ".join(c.kind for c in alerts)
        retune(context, by="feedback", reason=f"{ERROR_RETUNE_REASON}: {kinds}",
               tighten_only=True)  # fmt: skip
    return checks
