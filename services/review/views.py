"""Login, the queue and the labelling loop. Thin: load, call ``cascade.review``, commit, render."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import flash, jsonify, redirect, render_template, request, url_for
from sqlalchemy import select
from sqlalchemy.orm import Session

from cascade.db.schema import Label, ReviewItem, ReviewReason, Role, Submission, utcnow
from cascade.errors import Conflict
from cascade.metrics import LABELS
from cascade.review import LabelOutcome, claim_next, held_item, record_label, undo_last
from services.auth import (
    authenticate,
    current_user,
    login_user,
    logout_user,
    require_role,
    safe_next,
)
from services.review import bp, wants_json
from services.review.images import image_url
from services.review.stats import queue_counts
from services.web import context, db, dispatcher

log = logging.getLogger(__name__)

CATEGORIES = ("sexual", "violence", "hate", "self-harm", "drugs", "spam", "other")
MODERATORS = (Role.MODERATOR,)  # admins pass every role check


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    error = None
    if request.method == "POST":
        user = authenticate(
            db(), request.form.get("username", "").strip(), request.form.get("password", "")
        )
        if user is not None:
            login_user(user)
            return redirect(safe_next(request.args.get("next"), url_for("review.queue")))
        error = "Wrong user name or password."
    status = 401 if error else 200
    return render_template("review/login.html", error=error), status


@bp.post("/logout")
def logout() -> Any:
    logout_user()
    return redirect(url_for("review.login"))


@bp.get("/")
@require_role(Role.MODERATOR, Role.OPS)
def queue() -> Any:
    """Queue overview; moderators start labelling from here (Enter)."""
    counts = queue_counts(db(), utcnow())
    return render_template("review/queue.html", counts=counts, user=current_user())


def _claim_url(user_id: int) -> str | None:
    item = claim_next(db(), user_id=user_id, lease_s=context().settings.review_lease_s)
    db().commit()
    return url_for("review.item", item_id=item.id) if item is not None else None


@bp.post("/claim")
@require_role(*MODERATORS)
def claim() -> Any:
    user = current_user()
    assert user is not None
    url = _claim_url(user.id)
    if url is None:
        flash("The queue is empty. Well done.")
        return redirect(url_for("review.queue"))
    return redirect(url)


@bp.get("/item/<int:item_id>")
@require_role(*MODERATORS)
def item(item_id: int) -> Any:
    """One leased item. Scores and the automatic decision of audits stay hidden (anchoring)."""
    user = current_user()
    assert user is not None
    try:
        row = held_item(db(), item_id=item_id, user_id=user.id)
    except Conflict as exc:
        flash(exc.message)
        return redirect(url_for("review.queue"))
    sub = row.submission
    view = {
        "item": row,
        "sub": sub,
        "image": sub.image,
        "audit": row.reason == ReviewReason.AUDIT,
        "lease_s": context().settings.review_lease_s,
        "image_url": image_url(row.id, user.id),
        "previous": _previous(db(), user.id),
        "categories": CATEGORIES,
        "user": user,
    }
    return render_template("review/item.html", **view)


def _previous(db: Session, user_id: int) -> dict[str, Any] | None:
    """The user's last label, with the scores audits hid until then."""
    last = db.scalars(
        select(Label).where(Label.user_id == user_id).order_by(Label.created_at.desc())
    ).first()
    if last is None:
        return None
    sub = db.get(Submission, last.submission_id)
    reason = db.scalar(select(ReviewItem.reason).where(ReviewItem.id == last.review_item_id))
    return {"label": last.label, "reason": reason, "sub": sub}


def send_due_callback(outcome: LabelOutcome) -> None:
    """After the label committed: the decision's callback, when the label made one due (a
    send that fails is logged; the stale sweep sends it later)."""
    if outcome.callback_due:
        dispatcher().follow_up(callbacks=[outcome.submission_id])


def _seconds(raw: Any) -> float | None:
    try:
        return min(max(float(raw), 0.0), 3600.0)
    except (TypeError, ValueError):
        return None


def _after(outcome: LabelOutcome, user_id: int) -> Any:
    """Send a due callback, take the next item and answer with where to go."""
    send_due_callback(outcome)
    url = _claim_url(user_id)
    if url is None:
        flash("The queue is empty. Well done.")
        url = url_for("review.queue")
    if wants_json():
        return jsonify({"state": outcome.state, "next": url})
    return redirect(url)


@bp.post("/item/<int:item_id>/label")
@require_role(*MODERATORS)
def label(item_id: int) -> Any:
    user = current_user()
    assert user is not None
    body = request.get_json(silent=True) if request.is_json else request.form
    form = body if isinstance(body, Mapping) else {}
    outcome = record_label(
        db(),
        item_id=item_id,
        user_id=user.id,
        label=str(form.get("label", "")),
        settings=context().settings,
        category=str(form.get("category") or "") or None,
        note=str(form.get("note") or "")[:2000] or None,
        seconds_spent=_seconds(form.get("seconds")),
    )
    db().commit()
    LABELS.labels(label=str(form.get("label"))).inc()
    return _after(outcome, user.id)


@bp.post("/undo")
@require_role(*MODERATORS)
def undo() -> Any:
    user = current_user()
    assert user is not None
    outcome = undo_last(db(), user_id=user.id, settings=context().settings)
    db().commit()
    send_due_callback(outcome)
    url = url_for("review.item", item_id=outcome.item_id)
    return jsonify({"next": url}) if wants_json() else redirect(url)
