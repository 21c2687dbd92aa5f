"""Shared fixtures: an isolated, migrated database per test (SQLite by default, PostgreSQL when
CASCADE_TEST_DATABASE_URL is set), settings pointing at a temporary var/ folder, the app."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from cascade.config import Settings
from cascade.context import Context
from cascade.db.session import upgrade


def _fresh_database_url(tmp_path: Path) -> tuple[str, str | None]:
    """A brand-new empty database: a SQLite file, or a new database on the test PostgreSQL."""
    base = os.environ.get("CASCADE_TEST_DATABASE_URL")
    if not base:
        return f"sqlite:///{tmp_path / 'cascade.db'}", None
    name = f"cascade_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(base).set(database=name).render_as_string(hide_password=False), name


def _drop_database(name: str) -> None:
    admin = create_engine(os.environ["CASCADE_TEST_DATABASE_URL"], isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    url, pg_name = _fresh_database_url(tmp_path)
    upgrade(url)
    yield url
    if pg_name:
        _drop_database(pg_name)


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(
        env="test",
        var_dir=tmp_path / "var",
        database_url=database_url,
        blob_url=str(tmp_path / "var" / "blobs"),
        model_dir=tmp_path / "var" / "models",
        secret_key="test-secret-" + uuid.uuid4().hex,
        callback_secret="test-callback-" + uuid.uuid4().hex,
    )


@pytest.fixture
def context(settings: Settings) -> Iterator[Context]:
    ctx = Context.from_settings(settings)
    yield ctx
    ctx.close()


@pytest.fixture
def app(context: Context):  # type: ignore[no-untyped-def]
    from services.app import create_app

    app = create_app(context=context)
    app.config["TESTING"] = True
    return app


@pytest.fixture
def client(app):  # type: ignore[no-untyped-def]
    return app.test_client()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Redis: CASCADE_TEST_REDIS_URL when set, else a redis-server started here."""
    url = os.environ.get("CASCADE_TEST_REDIS_URL")
    if url:
        yield url
        return
    from services.embedded import start_redis

    proc = start_redis(tmp_path_factory.mktemp("redis"), persist=False)
    yield proc.url
    proc.stop()


@pytest.fixture
def broker_url(redis_url: str) -> Iterator[str]:
    """The test Redis, flushed before and after each test that uses it."""
    import redis

    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield redis_url
    client.flushdb()
    client.close()
