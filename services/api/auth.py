"""API-key authentication for upload services.

``require_api_key`` reads ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``, checks the
key against its stored hash (through the app's ``KeyCache``: a key seen valid within
``CASCADE_API_KEY_CACHE_S`` is not looked up again, so a revocation takes that long at most), sets
``flask.g.tenant_id`` and ``flask.g.api_key_id``, and charges the key's rate limit. Keys are never
logged or echoed back.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast

from flask import current_app, g, request

from cascade.apikeys import KeyCache
from cascade.errors import Unauthorized
from services.api.admission import admission
from services.web import context, db

F = TypeVar("F", bound=Callable[..., Any])

KEY_CACHE_EXTENSION = "cascade_api_keys"  # app.extensions[...]: the app's KeyCache
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


def key_cache() -> KeyCache:
    """This app's cache of valid keys (created on first use; shared by its request threads)."""
    found = current_app.extensions.get(KEY_CACHE_EXTENSION)
    if found is None:
        found = current_app.extensions[KEY_CACHE_EXTENSION] = KeyCache(
            context().settings.api_key_cache_s
        )
    return cast(KeyCache, found)


def require_api_key(view: F) -> F:
    """Views for upload services. 401 without a valid, active key; 429 over the rate limit."""
    return _guarded(view, charge=True)


def require_api_key_for_upload(view: F) -> F:
    """``require_api_key`` for the upload view, which charges the rate limit itself: in the same
    round trip as its stage-1 backlog check or reservation (``services.api.admission``)."""
    return _guarded(view, charge=False)


def _guarded(view: F, *, charge: bool) -> F:
    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        key = presented_key()
        if key is None:
            raise Unauthorized(MISSING_KEY)
        found = key_cache().verify(db(), key)
        if found is None:
            raise Unauthorized("invalid or revoked API key")
        g.tenant_id = found.tenant_id
        g.api_key_id = found.api_key_id
        g.rate_limit_per_minute = (
            found.rate_limit_per_minute or context().settings.rate_limit_per_minute
        )
        if charge:
            admission().charge(g.api_key_id, limit=g.rate_limit_per_minute)
        return view(*args, **kwargs)

    return cast(F, wrapped)
