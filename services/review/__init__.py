"""Moderator review UI: login, the keyboard-driven labelling queue, conflicts, statistics.

Server-rendered Jinja with a little vanilla JavaScript (``static/review.js``); no build step.
The rules of the queue, leases and undo live in ``cascade.review``; these views load, call,
commit and render.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template, request

from cascade.errors import CascadeError
from services.auth import csrf_protect
from services.web import cascade_error_response

bp = Blueprint(
    "review",
    __name__,
    url_prefix="/review",
    template_folder="templates",
    static_folder="static",
)
csrf_protect(bp)


def wants_json() -> bool:
    """Fetch calls from review.js ask for JSON; browsers navigating get HTML."""
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return request.is_json or best == "application/json"


@bp.errorhandler(CascadeError)
def _review_error(exc: CascadeError) -> Any:
    if wants_json():
        return cascade_error_response(exc)
    return render_template("review/error.html", error=exc), exc.status


from services.review import admin, images, views  # noqa: E402,F401  (routes register on bp)
