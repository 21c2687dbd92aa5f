"""API-key authentication for upload services.

``require_api_key`` reads ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``, checks the
key against its stored hash, sets ``flask.g.tenant_id`` and ``flask.g.api_key_id``, and charges
the key's rate limit. Keys are never logged or echoed back.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast

from flask import g, request

from cascade.apikeys import verify_key
from cascade.errors import Unauthorized
from services.api.admission import admission
from services.web import context, db

F = TypeVar("F", bound=Callable[..., Any])

MISSING_KEY = "missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"


def presented_key() -> str | None:
    """The key the request carries, if any (Bearer wins over X-API-Key)."""
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    key = request.headers.get("X-API-Key", "").strip()
    return key or None


def require_api_key(view: F) -> F:
    """Views for upload services. 401 without a valid, active key; 429 over the rate limit."""

    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        key = presented_key()
        if key is None:
            raise Unauthorized(MISSING_KEY)
        row = verify_key(db(), key)
        if row is None:
            raise Unauthorized("invalid or revoked API key")
        g.tenant_id = row.tenant_id
        g.api_key_id = row.id
        g.rate_limit_per_minute = (
            row.rate_limit_per_minute or context().settings.rate_limit_per_minute
        )
        admission().charge(g.api_key_id, limit=g.rate_limit_per_minute)
        return view(*args, **kwargs)

    return cast(F, wrapped)
