"""Threshold sets and labelled errors over HTTP (under /v1).

Reading thresholds needs a logged-in user; changing them needs an admin session and its CSRF
token. Upload services report appeals and user reports with their API key.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Blueprint, g, jsonify, request

from cascade.errors import BadRequest
from feedback import rollout, store
from feedback.metrics import LABELLED_ERRORS
from feedback.retune import proposal_as_dict, retune
from services.api.auth import require_api_key
from services.auth import check_csrf, current_user, require_role
from services.web import context, db


def admin_only(view: Callable[..., Any]) -> Callable[..., Any]:
    """An admin's session, and the session's CSRF token (``X-CSRF-Token``) on the request."""

    @require_role("admin")
    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        check_csrf()
        return view(*args, **kwargs)

    return wrapped


bp = Blueprint("feedback_api", __name__, url_prefix="/v1")


def _body() -> dict[str, Any]:
    """The request's JSON object (an empty body reads as ``{}``)."""
    body = request.get_json(silent=True) if request.content_length else {}
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


def _fraction(body: dict[str, Any], name: str) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
        raise BadRequest(f"{name} must be a number strictly between 0 and 1")
    return float(value)


def _who() -> str:
    user = current_user()
    return user.username if user is not None else "unknown"


@bp.get("/thresholds")
@require_role()
def list_thresholds() -> Any:
    """Every threshold set, newest first, with its provenance; plus which is in force."""
    items = [rollout.row_as_dict(row) for row in rollout.list_rows(db())]
    active = rollout.active_thresholds(db()).version
    return jsonify({"active_version": active, "items": items, "default": rollout.default_as_dict()})


@bp.get("/thresholds/active")
@require_role()
def active_thresholds() -> Any:
    row = rollout.active_row(db())
    return jsonify(rollout.row_as_dict(row) if row else rollout.default_as_dict())


@bp.post("/thresholds/retune")
@admin_only
def retune_thresholds() -> Any:
    """Run the optimiser now; ``{"activate": true}`` activates a certified result."""
    body = _body()
    activate = body.get("activate")
    if activate is not None and not isinstance(activate, bool):
        raise BadRequest("activate must be true or false")
    reason = str(body.get("reason") or "requested over the API")
    proposal = retune(
        context(),
        by=_who(),
        reason=reason,
        auto_activate=activate,
        alpha=_fraction(body, "alpha"),
        delta=_fraction(body, "delta"),
    )
    return jsonify(proposal_as_dict(proposal)), 201


@bp.post("/thresholds/<int:version>/activate")
@admin_only
def activate_thresholds(version: int) -> Any:
    _body()
    ts = rollout.activate(db(), version, by=_who())
    db().commit()
    return jsonify({"active": ts.as_dict()})


@bp.post("/thresholds/<int:version>/reject")
@admin_only
def reject_thresholds(version: int) -> Any:
    _body()
    row = rollout.reject(db(), version, by=_who())
    db().commit()
    return jsonify(rollout.row_as_dict(row))


@bp.post("/thresholds/rollback")
@admin_only
def rollback_thresholds() -> Any:
    _body()
    ts = rollout.rollback(db(), by=_who())
    db().commit()
    return jsonify({"active": ts.as_dict()})


@bp.post("/errors")
@require_api_key
def report_error() -> Any:
    """An appeal or user report: ``{submission_id, kind: miss|false_block, source:
    appeal|report, note}``. 201 when new, 200 when the same report was already stored."""
    body = _body()
    submission_id = body.get("submission_id")
    if not isinstance(submission_id, str) or not submission_id:
        raise BadRequest("submission_id (a string) is required")
    note = body.get("note")
    if note is not None and not isinstance(note, str):
        raise BadRequest("note must be a string")
    row, created = store.report_error(
        db(),
        submission_id=submission_id,
        kind=str(body.get("kind")),
        source=str(body.get("source")),
        note=note,
        tenant_id=getattr(g, "tenant_id", None),
    )
    db().commit()
    answer = {
        "id": row.id,
        "submission_id": row.submission_id,
        "kind": row.kind,
        "source": row.source,
        "threshold_version": row.threshold_version,
    }
    if created:
        LABELLED_ERRORS.labels(kind=answer["kind"], source=answer["source"]).inc()
    return jsonify(answer), 201 if created else 200
