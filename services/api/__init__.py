"""Upload API under /v1: submit images, read decisions, the OpenAPI document.

Routes attach to ``bp`` in the modules imported below; ``services.app.create_app`` registers it.
"""

from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/v1")

from services.api import docs, images, outage  # noqa: E402  (their routes attach to bp)

# App-wide: a database outage reads as 503 + Retry-After on every page, not only under /v1.
for _outage in outage.OUTAGES:
    bp.app_errorhandler(_outage)(outage.database_unavailable)

__all__ = ["bp", "docs", "images", "outage"]
