"""The database away for a moment is an outage, not a bug: answer 503 with Retry-After.

A failover, a restarted PostgreSQL or a SQLite file locked past its busy timeout raise
SQLAlchemy's ``OperationalError`` (``InterfaceError`` for a connection closed under us, a pool
``TimeoutError`` when no connection can be had). Other database errors (a constraint, a bad
query) are bugs and stay 500s. Clients that honour Retry-After (``cascade.client`` does) then retry by
themselves instead of giving up on a 500. Registered app-wide, so the review UI and the
dashboard answer the same way as the upload API.
"""

from __future__ import annotations

import logging

from flask import Response
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from cascade.errors import ServiceUnavailable

log = logging.getLogger(__name__)

DATABASE_RETRY_AFTER_S = 2


OUTAGES: tuple[type[Exception], ...] = (OperationalError, InterfaceError, PoolTimeout)


def database_unavailable(exc: Exception) -> Response:
    """503 + Retry-After: the client should come back, nothing is wrong with its request."""
    from services.api.images import _counted_error  # the API's one JSON error writer

    # One line, no statement or parameters: they may hold user data.
    log.warning("database unavailable: %s", type(getattr(exc, "orig", None) or exc).__name__)
    return _counted_error(
        ServiceUnavailable(
            "the database is unavailable for a moment; retry later",
            retry_after=DATABASE_RETRY_AFTER_S,
        )
    )
