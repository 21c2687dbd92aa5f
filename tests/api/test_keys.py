"""API keys: only a hash is stored, verification, revocation, and the `cascade keys` CLI."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, text

from cascade.apikeys import (
    KeyCache,
    KeyIdentity,
    create_key,
    hash_key,
    revoke_key,
    split_key,
    verify_key,
)
from cascade.config import Settings
from cascade.context import Context
from cascade.db.schema import ApiKey, Tenant
from services.api.auth import KEY_CACHE_EXTENSION

pytestmark = pytest.mark.integration


def test_database_never_holds_the_key(context: Context) -> None:
    with context.sessions() as session:
        issued = create_key(session, tenant_name="acme")
        session.commit()
    prefix, secret = split_key(issued.key) or ("", "")
    assert issued.key.startswith(f"csk_{prefix}_") and len(secret) >= 40
    with context.engine.connect() as conn:
        dump = repr(conn.execute(text("SELECT * FROM api_keys")).all())
        dump += repr(conn.execute(text("SELECT * FROM tenants")).all())
    assert secret not in dump and issued.key not in dump
    assert hash_key(issued.key) in dump  # what is stored instead


def test_verify_and_revoke(context: Context) -> None:
    with context.sessions() as session:
        a = create_key(session, tenant_name="acme")
        b = create_key(session, tenant_name="acme", rate_limit_per_minute=10)
        session.commit()
        assert a.tenant_id == b.tenant_id and a.prefix != b.prefix
        row = verify_key(session, a.key)
        assert row is not None and row.id == a.api_key_id
        assert verify_key(session, a.key + "x") is None
        assert verify_key(session, b.key[:-1]) is None
        assert verify_key(session, f"csk_{a.prefix}_{split_key(b.key)[1]}") is None  # type: ignore[index]
        assert verify_key(session, "") is None and verify_key(session, "nonsense") is None
        assert revoke_key(session, prefix=a.prefix) == 1
        session.commit()
        assert verify_key(session, a.key) is None
        assert verify_key(session, b.key) is not None
        assert revoke_key(session, prefix=a.prefix) == 0


class Clock:
    """A clock the test moves by hand (no sleeping, no timing)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_revoked_key_is_refused_by_the_api_within_the_cache_time(
    api: FlaskClient, api_app: Flask, api_context: Context, make_image: Callable[..., bytes]
) -> None:
    """The API trusts a key it found valid for ``api_key_cache_s`` seconds: a revoked key still
    gets in until then (the documented price of not looking it up each request), never after."""
    ttl = api_context.settings.api_key_cache_s
    assert ttl > 0
    clock = Clock()
    api_app.extensions[KEY_CACHE_EXTENSION] = KeyCache(ttl, clock=clock)
    headers = _used_then_revoked(api_context, api)
    clock.now += ttl * 0.99
    assert api.get("/v1/images/none", headers=headers).status_code == 404  # still cached
    clock.now += ttl * 0.02
    r = api.post("/v1/images", data=make_image(), headers=headers, content_type="image/png")
    assert r.status_code == 401
    assert r.json["error"]["message"] == "invalid or revoked API key"
    clock.now -= ttl  # refused keys are not cached: the clock does not bring it back
    assert api.get("/v1/images/none", headers=headers).status_code == 401


def _used_then_revoked(ctx: Context, api: FlaskClient) -> dict[str, str]:
    """Issue a key, make one accepted request with it, revoke it; returns its headers."""
    with ctx.sessions() as session:
        issued = create_key(session, tenant_name="acme")
        session.commit()
    headers = {"Authorization": f"Bearer {issued.key}"}
    assert api.get("/v1/images/none", headers=headers).status_code == 404
    with ctx.sessions() as session:
        revoke_key(session, prefix=issued.prefix)
        session.commit()
    return headers


def test_without_the_key_cache_a_revoked_key_is_refused_at_once(
    api_settings: Settings, make_image: Callable[..., bytes]
) -> None:
    from services.app import create_app

    ctx = Context.from_settings(api_settings.model_copy(update={"api_key_cache_s": 0.0}))
    api = create_app(context=ctx).test_client()
    headers = _used_then_revoked(ctx, api)
    assert api.get("/v1/images/none", headers=headers).status_code == 401
    ctx.close()


def test_key_cache_keeps_valid_keys_only_and_stays_bounded(context: Context) -> None:
    clock = Clock()
    cache = KeyCache(5.0, max_entries=2, clock=clock)
    with context.sessions() as session:
        keys = [create_key(session, tenant_name="acme", rate_limit_per_minute=7) for _ in range(3)]
        session.commit()
        found = cache.verify(session, keys[0].key)
        assert found == KeyIdentity(keys[0].api_key_id, keys[0].tenant_id, 7)
        assert cache.verify(session, keys[0].key + "x") is None
        for issued in keys:
            assert cache.verify(session, issued.key) is not None
        assert len(cache._entries) == 2  # the oldest left to make room
        assert hash_key(keys[0].key) not in cache._entries
        assert all(issued.key not in repr(cache._entries) for issued in keys)  # hashes only


def test_keys_never_reach_the_logs(
    api: FlaskClient,
    api_context: Context,
    make_image: Callable[..., bytes],
    caplog: pytest.LogCaptureFixture,
) -> None:
    with api_context.sessions() as session:
        issued = create_key(session, tenant_name="acme")
        session.commit()
    caplog.set_level(logging.DEBUG)
    for headers in ({"X-API-Key": issued.key}, {"X-API-Key": issued.key + "wrong"}):
        api.post("/v1/images", data=make_image(), headers=headers, content_type="image/png")
        api.post("/v1/images", data=b"junk", headers=headers, content_type="image/png")
    assert split_key(issued.key)[1] not in caplog.text  # type: ignore[index]


def test_cli_create_list_revoke(settings: Settings, context: Context) -> None:
    from services.cli import main

    runner = CliRunner()
    created = runner.invoke(main, ["keys", "create", "--tenant", "acme"], obj=settings)
    assert created.exit_code == 0, created.output
    key = created.stdout.strip()
    prefix = (split_key(key) or ("", ""))[0]
    assert prefix
    with context.sessions() as session:
        assert verify_key(session, key) is not None
        assert session.scalars(select(Tenant.name)).all() == ["acme"]

    listed = runner.invoke(main, ["keys", "list"], obj=settings)
    assert listed.exit_code == 0 and prefix in listed.stdout and "active" in listed.stdout
    assert key not in listed.stdout

    revoked = runner.invoke(main, ["keys", "revoke", prefix], obj=settings)
    assert revoked.exit_code == 0, revoked.output
    with context.sessions() as session:
        assert verify_key(session, key) is None
        assert session.scalars(select(ApiKey.active)).all() == [False]
    again = runner.invoke(main, ["keys", "revoke", prefix], obj=settings)
    assert again.exit_code != 0 and "no active key" in again.output
    bad = runner.invoke(main, ["keys", "create", "--tenant", "  "], obj=settings)
    assert bad.exit_code == 2


def test_cli_db_upgrade_creates_the_schema(tmp_path: object, settings: Settings) -> None:
    from sqlalchemy import create_engine, inspect

    from services.cli import main

    fresh = settings.model_copy(update={"database_url": f"sqlite:///{tmp_path}/fresh.db"})
    result = CliRunner().invoke(main, ["db", "upgrade"], obj=fresh)
    assert result.exit_code == 0, result.output
    engine = create_engine(fresh.database)
    assert {"api_keys", "submissions", "tenants"} <= set(inspect(engine).get_table_names())
    engine.dispose()
