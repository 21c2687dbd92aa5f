"""The Flask application factory: API under /v1, review UI under /review, dashboard, metrics."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from cascade.config import Settings
from cascade.context import Context
from cascade.errors import CascadeError

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, context: Context | None = None) -> Flask:
    """Build the web app. Tests pass their own settings or context (isolated DB per test)."""
    ctx = context or Context.from_settings(settings)
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=ctx.settings.secret_key,
        MAX_CONTENT_LENGTH=max(ctx.settings.max_request_bytes, ctx.settings.max_upload_bytes),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=ctx.settings.env == "production",
    )
    app.extensions["cascade"] = ctx

    from services.api import bp as api_bp
    from services.dashboard import bp as dashboard_bp
    from services.feedback_api import bp as feedback_bp
    from services.review import bp as review_bp
    from services.web_metrics import bp as metrics_bp

    app.register_blueprint(api_bp)
    app.register_blueprint(review_bp)
    app.register_blueprint(dashboard_bp)
    app.register_blueprint(feedback_bp)
    app.register_blueprint(metrics_bp)
    _register_error_handlers(app)
    return app


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def _register_error_handlers(app: Flask) -> None:
    @app.errorhandler(CascadeError)
    def _cascade_error(exc: CascadeError) -> Any:
        response = jsonify(error_body(exc.code, exc.message))
        response.status_code = exc.status
        if exc.retry_after is not None:
            response.headers["Retry-After"] = str(exc.retry_after)
        return response

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Any:
        code = (exc.name or "error").lower().replace(" ", "_")
        response = jsonify(error_body(code, exc.description or exc.name or "error"))
        response.status_code = exc.code or 500
        return response

    @app.errorhandler(Exception)
    def _unknown_error(exc: Exception) -> Any:
        log.exception("unhandled error")
        response = jsonify(error_body("internal", "internal error; it has been logged"))
        response.status_code = 500
        return response
