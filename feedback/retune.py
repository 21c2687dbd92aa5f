"""The retune job: optimise thresholds on the audit sample, store the proposal, maybe activate.

Thin: load from the database, call the pure core, store, log, count. The alert jobs live
beside it (``feedback.error_alerts``, ``feedback.score_alerts``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from cascade.context import Context
from cascade.db.schema import utcnow
from cascade.db.session import session_scope
from feedback import rollout, store
from feedback.costs import StageCosts, stage_costs
from feedback.metrics import RETUNES
from feedback.optimise import Optimum, optimise

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
