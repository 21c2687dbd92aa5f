"""API keys of upload services: issued once, stored only as a hash, checked in constant time.

A key reads ``csk_<prefix>_<secret>``. The prefix is public (it names the key in listings and
in ``cascade keys revoke``) and indexes the lookup; the secret carries 256 bits of entropy.
Because keys are random and long, a plain SHA-256 is the right hash (as for GitHub tokens): a
slow password hash would only add latency to every request, not security.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
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
