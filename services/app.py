"""The Flask application factory: API under /v1, review UI under /review, dashboard, metrics."""

from __future__ import annotations

from flask import Flask

from cascade.config import Settings
from cascade.context import Context
from services import web


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
    web.init_app(app, ctx)

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
    return app
