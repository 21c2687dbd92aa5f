"""Upload API under /v1: submit images, read decisions, the OpenAPI document.

Routes attach to ``bp`` in the modules imported below; ``services.app.create_app`` registers it.
"""

from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/v1")

from services.api import docs, images  # noqa: E402  (their routes attach to bp)

__all__ = ["bp", "docs", "images"]
