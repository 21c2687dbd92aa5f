"""The feedback jobs: retune (propose, maybe activate), check labelled errors, check drift.

Thin: load from the database, call the pure core, store, log, count.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cascade.context import Context
from cascade.db.schema import utcnow
from cascade.db.session import session_scope
from feedback import rollout, store
from feedback.costs import StageCosts, stage_costs
from feedback.estimate import estimate
from feedback.metrics import ALERTS, RETUNES, SCORE_PSI
from feedback.optimise import Optimum, optimise
from feedback.signals import DriftCheck, ErrorCheck, check_drift, check_error_count

log = logging.getLogger(__name__)

AUDIT_LOOKBACK = timedelta(days=30)
TRAFFIC_WINDOW = timedelta(days=1)


@dataclass(frozen=True)
class Proposal:
    """A stored proposal: its version, what the optimiser found, and whether it is in force."""

    version: int
    optimum: Optimum
    costs: StageCosts
    activated: bool
    reason: str
    created_by: str
    traffic_per_hour: float = 0.0


def retune(
    context: Context,
    *,
    by: str,
    reason: str,
    auto_activate: bool | None = None,
    alpha: float | None = None,
    delta: float | None = None,
    tighten_only: bool = False,
) -> Proposal:
    """Optimise thresholds on the audit sample and store the result as a proposed set.

    ``auto_activate`` (default: the ``auto_activate`` setting) activates a *certified* proposal
    at once; a fallback is never activated automatically (it sends every ambiguous image to a
    human, a load an admin should choose). ``tighten_only`` caps the allow thresholds at the
    active set's (a retune triggered by appeals or reports may not loosen them).
    """
    settings = context.settings
    now = utcnow()
    with session_scope(context.sessions) as session:
        sample = store.load_audit_sample(session, since=now - AUDIT_LOOKBACK)
        measured = store.measured_dollars_per_image(session, settings, since=now - AUDIT_LOOKBACK)
        traffic = store.traffic_per_hour(session, since=now - TRAFFIC_WINDOW, until=now)
        ceiling = rollout.active_thresholds(session) if tighten_only else None
    costs = stage_costs(settings, measured)
    optimum = optimise(
        sample,
        costs,
        alpha=settings.alpha if alpha is None else alpha,
        delta=settings.delta if delta is None else delta,
        traffic_per_hour=traffic,
        max_reviews_per_hour=settings.max_reviews_per_hour,
        ceiling=ceiling,
    )
    activate = settings.auto_activate if auto_activate is None else auto_activate
    with session_scope(context.sessions) as session:
        row = rollout.propose(session, optimum, costs, by=by, reason=reason)
        version = row.version
        activated = activate and optimum.certified
        if activated:
            rollout.activate(session, version, by=by)
    RETUNES.labels(outcome="certified" if optimum.certified else "fallback").inc()
    log.info(
        "retune v%d by %s (%s): %s, n=%d, cost=%s, bound=%.4g, activated=%s",
        version, by, reason, optimum.note, optimum.n_samples,
        optimum.estimate.cost if optimum.estimate else None, optimum.miss_rate_bound, activated,
    )  # fmt: skip
    return Proposal(version, optimum, costs, activated, reason, by, traffic)


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


def proposal_as_dict(proposal: Proposal) -> dict[str, Any]:
    """A proposal for JSON answers and the CLI."""
    opt = proposal.optimum
    return {
        "version": proposal.version,
        "thresholds": opt.thresholds.as_dict() | {"version": proposal.version},
        "certified": opt.certified,
        "fallback": opt.fallback,
        "activated": proposal.activated,
        "note": opt.note,
        "alpha": opt.alpha,
        "delta": opt.delta,
        "miss_rate_bound": opt.miss_rate_bound,
        "n_samples": opt.n_samples,
        "n_bound_samples": opt.n_bound_samples,
        "traffic_per_hour": proposal.traffic_per_hour,
        "estimate": opt.estimate.as_dict() if opt.estimate else None,
        "costs": proposal.costs.as_dict(),
        "reason": proposal.reason,
        "created_by": proposal.created_by,
    }
