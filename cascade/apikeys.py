"""API keys of upload services: issued once, stored only as a hash, checked in constant time.

A key reads ``csk_<prefix>_<secret>``. The prefix is public (it names the key in listings and
in ``cascade keys revoke``) and indexes the lookup; the secret carries 256 bits of entropy.
Because keys are random and long, a plain SHA-256 is the right hash (as for GitHub tokens): a
slow password hash would only add latency to every request, not security.

The API checks keys through a ``KeyCache``: a key found valid is trusted for a few seconds
(``CASCADE_API_KEY_CACHE_S``) without a database round trip, so a revoked key (or a changed rate
limit) takes effect within that time, not at once. Keys found invalid are never cached.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from cascade.db.schema import ApiKey, Tenant

SCHEME = "csk"
_PREFIX_BYTES = 4  # 8 hex characters
_MAX_KEY_LENGTH = 200


@dataclass(frozen=True)
class IssuedKey:
    """A freshly created key: ``key`` is shown to its owner once and never stored."""

    key: str
    prefix: str
    api_key_id: int
    tenant_id: int


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def split_key(key: str) -> tuple[str, str] | None:
    """``(prefix, secret)`` of a well-formed key, else None (never raises on junk input)."""
    if not key or len(key) > _MAX_KEY_LENGTH:
        return None
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != SCHEME or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


def ensure_tenant(session: Session, *, name: str) -> Tenant:
    """The tenant called ``name``, created on first use."""
    tenant = session.scalars(select(Tenant).where(Tenant.name == name)).first()
    if tenant is None:
        tenant = Tenant(name=name)
        session.add(tenant)
        session.flush()
    return tenant


def create_key(
    session: Session, *, tenant_name: str, rate_limit_per_minute: int | None = None
) -> IssuedKey:
    """Issue a new key for ``tenant_name`` (created if new). The caller commits."""
    if not tenant_name.strip():
        raise ValueError("a tenant name is required")
    if rate_limit_per_minute is not None and rate_limit_per_minute < 1:
        raise ValueError("rate_limit_per_minute must be at least 1")
    tenant = ensure_tenant(session, name=tenant_name.strip())
    prefix = secrets.token_hex(_PREFIX_BYTES)
    key = f"{SCHEME}_{prefix}_{secrets.token_urlsafe(32)}"
    row = ApiKey(
        tenant_id=tenant.id,
        prefix=prefix,
        key_hash=hash_key(key),
        active=True,
        rate_limit_per_minute=rate_limit_per_minute,
    )
    session.add(row)
    session.flush()
    return IssuedKey(key=key, prefix=prefix, api_key_id=row.id, tenant_id=tenant.id)


def verify_key(session: Session, key: str) -> ApiKey | None:
    """The active key row matching ``key``, else None.

    Looked up by its prefix, then compared by hash with ``hmac.compare_digest`` so the time
    taken does not tell an attacker how much of a guess was right.
    """
    parts = split_key(key)
    if parts is None:
        return None
    candidates = session.scalars(select(ApiKey).where(ApiKey.prefix == parts[0])).all()
    wanted = hash_key(key)
    match = None
    for row in candidates:
        if hmac.compare_digest(row.key_hash, wanted):
            match = row
    if match is None or not match.active:
        return None
    return match


@dataclass(frozen=True)
class KeyIdentity:
    """What a request needs of a valid key: plain values, safe to keep across requests."""

    api_key_id: int
    tenant_id: int
    rate_limit_per_minute: int | None


class KeyCache:
    """Valid keys remembered for ``ttl_s`` seconds, so a busy client costs one key look-up per
    ``ttl_s``, not one per request (the look-up is a database round trip on the upload path).

    The price: a key revoked (or given another rate limit) is still honoured until its entry
    expires, ``ttl_s`` at most; ``ttl_s=0`` turns the cache off. Only keys found valid are kept,
    under their SHA-256 (never the key), at most ``max_entries`` of them; an unknown or revoked
    key costs a look-up every time, as it did without the cache.
    """

    def __init__(
        self,
        ttl_s: float,
        *,
        max_entries: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._clock = clock
        self._entries: dict[str, tuple[float, KeyIdentity]] = {}
        self._lock = threading.Lock()

    def verify(self, session: Session, key: str) -> KeyIdentity | None:
        """The identity of ``key`` if it is valid (from the cache when seen valid within
        ``ttl_s``), else None."""
        digest = hash_key(key)
        now = self._clock()
        hit = self._entries.get(digest)
        if hit is not None and hit[0] > now:
            return hit[1]
        row = verify_key(session, key)
        if row is None:
            self._entries.pop(digest, None)
            return None
        identity = KeyIdentity(row.id, row.tenant_id, row.rate_limit_per_minute)
        if self.ttl_s > 0:
            self._remember(digest, now + self.ttl_s, identity, now)
        return identity

    def _remember(self, digest: str, until: float, identity: KeyIdentity, now: float) -> None:
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries = {d: e for d, e in self._entries.items() if e[0] > now}
                while len(self._entries) >= self.max_entries:  # all live: the oldest go
                    del self._entries[next(iter(self._entries))]
            self._entries[digest] = (until, identity)


def revoke_key(session: Session, *, prefix: str) -> int:
    """Deactivate every key with ``prefix``; returns how many were active. The caller commits."""
    rows = session.scalars(select(ApiKey).where(ApiKey.prefix == prefix)).all()
    changed = 0
    for row in rows:
        if row.active:
            row.active = False
            changed += 1
    return changed


def list_keys(session: Session) -> list[tuple[ApiKey, str]]:
    """Every key with its tenant's name, newest first (hashes stay in the database)."""
    rows = session.execute(
        select(ApiKey, Tenant.name)
        .join(Tenant, Tenant.id == ApiKey.tenant_id)
        .order_by(ApiKey.created_at.desc(), ApiKey.id.desc())
    ).all()
    return [(row[0], str(row[1])) for row in rows]
