"""What every view uses, one way each (flaskr's ``get_db`` pattern, grown a little).

- ``context()``: this app's :class:`cascade.context.Context` (settings, sessions, blobs).
- ``db()``: the request's one database session, opened on first use and closed on teardown
  (uncommitted changes are rolled back then). A view that writes calls ``db().commit()``.
- ``dispatcher()``: this app's :class:`cascade.dispatch.Dispatcher`, for what is sent after a
  commit (stage 1 of an upload, a callback after a human label).
- ``error_response()``: the one JSON error body, ``{"error": {"code", "message"}}``.
- ``init_app()``: wires the above and the app-wide error handlers into an app.
"""

from __future__ import annotations

import logging
from typing import Any, cast

from flask import Flask, Response, current_app, g, jsonify
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session
from werkzeug.exceptions import HTTPException

from cascade.context import Context
from cascade.dispatch import Dispatcher
from cascade.errors import CascadeError, ServiceUnavailable
from cascade.metrics import REJECTED

log = logging.getLogger(__name__)

_CONTEXT = "cascade"
_DISPATCHER = "cascade_dispatcher"

# A failover, a restarted PostgreSQL or a SQLite file locked past its busy timeout raise
# ``OperationalError`` (``InterfaceError`` for a connection closed under us, a pool
# ``TimeoutError`` when no connection can be had): an outage, answered 503 + Retry-After so
# clients come back. Other database errors (a constraint, a bad query) are bugs: 500.
DATABASE_OUTAGES: tuple[type[Exception], ...] = (OperationalError, InterfaceError, PoolTimeout)
DATABASE_RETRY_AFTER_S = 2


def context() -> Context:
    """This app's context."""
    return cast(Context, current_app.extensions[_CONTEXT])


def db() -> Session:
    """The request's session (one per request, closed on teardown)."""
    if "db" not in g:
        g.db = context().sessions()
    return cast(Session, g.db)


def dispatcher() -> Dispatcher:
    """This app's dispatcher (its producer connection is made on first send)."""
    return cast(Dispatcher, current_app.extensions[_DISPATCHER])


def error_response(
    code: str, message: str, status: int, *, retry_after: int | None = None
) -> Response:
    """The JSON error every part of the web app answers with."""
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


def cascade_error_response(exc: CascadeError) -> Response:
    return error_response(exc.code, exc.message, exc.status, retry_after=exc.retry_after)


def rejected_response(exc: CascadeError) -> Response:
    """``exc`` answered and counted (``cascade_rejected_total{code}``): the upload API's errors
    and database outages, wherever they happen."""
    REJECTED.labels(code=exc.code).inc()
    return cascade_error_response(exc)


def database_unavailable(exc: Exception) -> Response:
    """503 + Retry-After: the client should come back, nothing is wrong with its request.
    Logged in one line, no statement or parameters: they may hold user data."""
    log.warning("database unavailable: %s", type(getattr(exc, "orig", None) or exc).__name__)
    return rejected_response(
        ServiceUnavailable(
            "the database is unavailable for a moment; retry later",
            retry_after=DATABASE_RETRY_AFTER_S,
        )
    )


def _close_db(_exc: BaseException | None = None) -> None:
    """Close the request's session. The answer is already made: a close that fails (its
    rollback on a connection the database just cut, e.g. during a PostgreSQL restart) is logged,
    not raised, or it would turn that answer into a 500 (seen once in 20 soak runs)."""
    session = g.pop("db", None)
    if session is None:
        return
    try:
        session.close()
    except Exception as exc:  # the pool drops a connection that failed like this
        log.warning("closing the request's database session failed: %s", exc)


def init_app(app: Flask, ctx: Context) -> None:
    """Give ``app`` its context, dispatcher, request sessions and error handlers."""
    app.extensions[_CONTEXT] = ctx
    app.extensions[_DISPATCHER] = Dispatcher(ctx.settings)
    app.teardown_appcontext(_close_db)

    @app.errorhandler(CascadeError)
    def _cascade_error(exc: CascadeError) -> Any:
        return cascade_error_response(exc)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Any:
        code = (exc.name or "error").lower().replace(" ", "_")
        return error_response(code, exc.description or exc.name or "error", exc.code or 500)

    for outage in DATABASE_OUTAGES:
        app.register_error_handler(outage, database_unavailable)

    @app.errorhandler(Exception)
    def _unknown_error(exc: Exception) -> Any:
        log.exception("unhandled error")
        return error_response("internal", "internal error; it has been logged", 500)
