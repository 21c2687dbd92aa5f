"""The retune job: optimise thresholds on the audit sample, store the proposal, maybe activate.

Thin: load from the database, call the pure core, store, log, count. The alert jobs live
beside it (``feedback.error_alerts``, ``feedback.score_alerts``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

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
    windows: Windows | None = None


@dataclass(frozen=True)
class Windows:
    """The audit windows of a retune: ``[since, until)`` tests; ``[previous, since)``, when
    there is one, orders (see :mod:`feedback.ltt`). None of them reaches back past the last
    drift alarm."""

    since: datetime
    until: datetime
    previous: datetime | None

    def as_dict(self) -> dict[str, str | None]:
        return {
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "previous": self.previous.isoformat() if self.previous else None,
        }


def audit_windows(session: Session, now: datetime) -> Windows:
    """The last ``AUDIT_LOOKBACK`` up to where labels are complete
    (:func:`feedback.store.complete_until`), and the lookback before it as the previous
    window; both start no earlier than the last drift alarm (traffic before it is not the
    traffic the next certificate must hold for)."""
    alarm = rollout.last_drift_alarm(session)
    since = now - AUDIT_LOOKBACK if alarm is None else max(now - AUDIT_LOOKBACK, alarm)
    until = store.complete_until(session, since=since) or now
    previous = since - AUDIT_LOOKBACK if alarm is None else max(since - AUDIT_LOOKBACK, alarm)
    return Windows(since, until, previous if previous < since else None)


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
    """Optimise thresholds on the complete audit window and store the result as a proposal.

    ``auto_activate`` (default: the ``auto_activate`` setting) activates a *certified* proposal
    at once; a fallback is never activated automatically (it sends every ambiguous image to a
    human, a load an admin should choose). When the optimiser keeps the set in force
    (``Optimum.kept``, :mod:`feedback.incumbent`), the proposal holds the same thresholds under
    the new certificate, and activating it renews the record the drift guard compares against.
    ``tighten_only`` caps the allow thresholds at the active set's (a retune triggered by
    appeals or reports may not loosen them).
    """
    settings = context.settings
    now = utcnow()
    with session_scope(context.sessions) as session:
        windows = audit_windows(session, now)
        sample = store.load_audit_sample(session, since=windows.since, until=windows.until)
        earlier = None
        if windows.previous is not None:
            earlier = store.load_audit_sample(session, since=windows.previous, until=windows.since)
        measured = store.measured_dollars_per_image(session, settings, since=now - AUDIT_LOOKBACK)
        traffic = store.traffic_per_hour(session, since=now - TRAFFIC_WINDOW, until=now)
        active = rollout.active_thresholds(session)
    ceiling = active if tighten_only else None
    costs = stage_costs(settings, measured)
    optimum = optimise(
        sample,
        costs,
        alpha=settings.alpha if alpha is None else alpha,
        delta=settings.delta if delta is None else delta,
        beta=settings.beta,
        miss_share=settings.miss_share,
        traffic_per_hour=traffic,
        max_reviews_per_hour=settings.max_reviews_per_hour,
        ceiling=ceiling,
        order_sample=earlier,
        tie_break_se=settings.tie_break_se,
        incumbent=active,
        switch_se=settings.switch_se,
    )
    activate = settings.auto_activate if auto_activate is None else auto_activate
    with session_scope(context.sessions) as session:
        row = rollout.propose(session, optimum, costs, by=by, reason=reason,
                              window=windows.as_dict())  # fmt: skip
        version = row.version
        activated = activate and optimum.certified
        if activated:
            rollout.activate(session, version, by=by)
    RETUNES.labels(outcome="certified" if optimum.certified else "fallback").inc()
    log.info(
        "retune v%d by %s (%s): %s, n=%d (%s), cost=%s, bound=%.4g, activated=%s",
        version, by, reason, optimum.note, optimum.n_samples, optimum.design,
        optimum.estimate.cost if optimum.estimate else None, optimum.miss_rate_bound, activated,
    )  # fmt: skip
    return Proposal(version, optimum, costs, activated, reason, by, traffic, windows)


def proposal_as_dict(proposal: Proposal) -> dict[str, Any]:
    """A proposal for JSON answers and the CLI."""
    opt = proposal.optimum
    return {
        "version": proposal.version,
        "thresholds": opt.thresholds.as_dict() | {"version": proposal.version},
        "certified": opt.certified,
        "fallback": opt.fallback,
        "kept": opt.kept,
        "challenger": opt.comparison.as_dict() if opt.comparison else None,
        "activated": proposal.activated,
        "note": opt.note,
        "alpha": opt.alpha,
        "delta": opt.delta,
        "miss_rate_bound": opt.miss_rate_bound,
        "n_samples": opt.n_samples,
        "n_bound_samples": opt.n_bound_samples,
        "certificate": rollout.certificate_of(opt),
        "window": proposal.windows.as_dict() if proposal.windows else None,
        "traffic_per_hour": proposal.traffic_per_hour,
        "estimate": opt.estimate.as_dict() if opt.estimate else None,
        "costs": proposal.costs.as_dict(),
        "reason": proposal.reason,
        "created_by": proposal.created_by,
    }
