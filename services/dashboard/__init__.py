"""Built-in cost dashboard: one server-rendered page (ops, read-only) drawing charts from JSON
endpoints under ``/dashboard/api/``. Admins also get approve/rollback buttons that call the
threshold endpoints of the feedback API. Numbers come from ``cascade.stats``, which reads the
roll-ups (``cascade.rollup``), so every window costs about the same at any number of decisions;
nothing is cached between requests, so every figure is exact when it is drawn."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, render_template, request, url_for

from cascade import stats
from cascade.db.schema import Role
from cascade.errors import BadRequest
from services.auth import csrf_token, current_user, require_role
from services.web import db

bp = Blueprint(
    "dashboard",
    __name__,
    url_prefix="/dashboard",
    template_folder="templates",
    static_folder="static",
)

SPANS_S = {
    "1h": 3600,
    "6h": 6 * 3600,
    "24h": 86400,
    "7d": 7 * 86400,
    "30d": 30 * 86400,
    "90d": 90 * 86400,  # daily roll-ups: still there after the raw rows are pruned
}
DEFAULT_SPAN = "24h"


def window_from_request() -> stats.Window:
    """The window the page asked for (``?span=24h``); the end is now."""
    span = request.args.get("span", DEFAULT_SPAN)
    if span not in SPANS_S:
        raise BadRequest(f"span must be one of {', '.join(SPANS_S)}, not {span!r}")
    return stats.make_window(end=datetime.now(UTC), span_s=SPANS_S[span])


@bp.get("")
@bp.get("/")
@require_role(Role.OPS)
def index() -> str:
    user = current_user()
    return render_template(
        "dashboard/index.html",
        spans=list(SPANS_S),
        default_span=DEFAULT_SPAN,
        is_admin=user is not None and user.role == Role.ADMIN,
        username=user.username if user else "",
        api_base=url_for("dashboard.index").rstrip("/") + "/api",
        csrf=csrf_token(),
    )


@bp.get("/api/cost")
@require_role(Role.OPS)
def api_cost() -> dict[str, Any]:
    """Cost per image (compute/human/error), images/s, shares, rates, spend summary."""
    window = window_from_request()
    session = db()
    data = stats.cost_and_volume(session, window=window)
    totals = data["totals"]
    data["summary"] = stats.spend_summary(
        session,
        window=window,
        dollars=sum(totals["dollars"].values()),
        decided=totals["images"],
    )
    data["changes"] = stats.threshold_changes(session, start=window.start, end=window.end)
    return data


@bp.get("/api/latency")
@require_role(Role.OPS)
def api_latency() -> dict[str, Any]:
    """Upload-to-decision latency p50/p95/p99 over time."""
    window = window_from_request()
    session = db()
    data = stats.latency(session, window=window)
    data["changes"] = stats.threshold_changes(session, start=window.start, end=window.end)
    return data


@bp.get("/api/queues")
@require_role(Role.OPS)
def api_queues() -> dict[str, Any]:
    """Queue depths (from the gauges ``cascade.maintenance.refresh_gauges`` sets) and the
    review backlog (DB)."""
    from cascade.metrics import current_queue_depths

    session = db()
    backlog, oldest = stats.review_backlog(session)
    age = (datetime.now(UTC) - oldest).total_seconds() if oldest is not None else None
    return stats.queue_overview(current_queue_depths(), backlog, age)


@bp.get("/api/decisions")
@require_role(Role.OPS)
def api_decisions() -> dict[str, Any]:
    """Decision quality: out-of-distribution images sent to a human, the active certificate,
    the drift guard's last alarm (``feedback.quality_view``)."""
    from feedback.quality_view import decision_quality

    window = window_from_request()
    return decision_quality(db(), start=window.start, end=window.end)


@bp.get("/api/thresholds")
@require_role(Role.OPS)
def api_thresholds() -> dict[str, Any]:
    """Recent threshold sets and the active version."""
    session = db()
    return {
        "active": stats.active_threshold_version(session),
        "sets": stats.threshold_sets(session),
    }
