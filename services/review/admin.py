"""Admin page (conflicts to rule on, agreement between moderators) and a moderator's own stats."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from flask import flash, redirect, render_template, request, url_for
from sqlalchemy import select

from cascade.db.schema import Label, ReviewItem, ReviewState, Role, User, utcnow
from cascade.review import (
    awaits_second_ruling,
    cohens_kappa,
    disputes_the_cascade,
    resolve_conflict,
)
from services.auth import current_user, require_role
from services.review import bp
from services.review.images import image_url
from services.review.stats import agreement_table, label_pairs, moderator_stats, queue_counts
from services.review.views import send_due_callback
from services.web import context, db

log = logging.getLogger(__name__)

AGREEMENT_DAYS = 30


@bp.get("/admin")
@require_role(Role.ADMIN)
def admin() -> Any:
    user = current_user()
    assert user is not None
    now = utcnow()
    session = db()
    conflicts = session.scalars(
        select(ReviewItem)
        .where(ReviewItem.state == ReviewState.CONFLICT)
        .order_by(ReviewItem.created_at)
        .limit(50)
    ).all()
    names = {uid: name for uid, name in session.execute(select(User.id, User.username))}
    rows = []
    for item in conflicts:
        votes = session.scalars(
            select(Label).where(Label.review_item_id == item.id).order_by(Label.created_at)
        ).all()
        rows.append(
            {
                "item": item,
                "sub": item.submission,
                "votes": [(names.get(v.user_id, "?"), v) for v in votes],
                "mine": any(v.user_id == user.id for v in votes),
                "disputes": _agreed_dispute(item, votes),
                "second": awaits_second_ruling(item, [v.label for v in votes]),
                "image_url": image_url(item.id, user.id),
            }
        )
    pairs = label_pairs(session, now - timedelta(days=AGREEMENT_DAYS))
    view = {
        "rows": rows,
        "counts": queue_counts(session, now),
        "kappa": cohens_kappa([(p.label_a, p.label_b) for p in pairs]),
        "n_pairs": len(pairs),
        "table": agreement_table(session, pairs),
        "days": AGREEMENT_DAYS,
        "user": user,
    }
    return render_template("review/admin.html", **view)


@bp.post("/admin/conflict/<int:item_id>")
@require_role(Role.ADMIN)
def rule(item_id: int) -> Any:
    user = current_user()
    assert user is not None
    outcome = resolve_conflict(
        db(),
        item_id=item_id,
        admin_id=user.id,
        label=request.form.get("label", ""),
        settings=context().settings,
        note=request.form.get("note") or None,
    )
    db().commit()
    send_due_callback(outcome)
    if outcome.state == ReviewState.CONFLICT:
        flash(f"Item {item_id}: your ruling is recorded; a second admin confirms it.")
    else:
        flash(f"Item {item_id} decided: {request.form.get('label')}.")
    return redirect(url_for("review.admin"))


@bp.get("/stats")
@require_role(Role.MODERATOR)
def stats() -> Any:
    user = current_user()
    assert user is not None
    mine = moderator_stats(db(), user.id, utcnow())
    return render_template("review/stats.html", stats=mine, user=user)


def _agreed_dispute(item: ReviewItem, votes: Sequence[Label]) -> bool:
    """Whether this conflict is the moderators agreeing against the automatic decision."""
    labels = {v.label for v in votes if v.label != "skip"}
    return len(labels) == 1 and disputes_the_cascade(item, labels.pop())
