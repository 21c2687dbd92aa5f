"""Fixtures for the upload API: an app on a real broker (the test Redis), keys of two tenants,
and image bytes made here (no files from outside the tests)."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image

from cascade import queues
from cascade.apikeys import IssuedKey, create_key
from cascade.config import Settings
from cascade.context import Context

# Small limits keep the "too large" cases cheap to build.
MAX_UPLOAD_BYTES = 300_000
MAX_PIXELS = 4_000_000


API_LIMITS: dict[str, Any] = {
    "max_upload_bytes": MAX_UPLOAD_BYTES,
    "max_pixels": MAX_PIXELS,
    "max_batch_images": 8,
    "max_request_bytes": 4 * MAX_UPLOAD_BYTES,
    "audit_rate": 0.0,
}


@pytest.fixture
def api_settings(settings: Settings, broker_url: str) -> Settings:
    return settings.model_copy(update={"broker_url": broker_url, **API_LIMITS})


@pytest.fixture(scope="module")
def module_context(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Context]:
    """One database for a whole module, for tests that only add unrelated rows (the hostile
    corpus): a fresh PostgreSQL database per test would dominate their run time."""
    from cascade.db.session import upgrade
    from tests.conftest import _drop_database, _fresh_database_url

    tmp = tmp_path_factory.mktemp("api-module")
    url, pg_name = _fresh_database_url(tmp)
    upgrade(url)
    settings = Settings(
        env="test",
        var_dir=tmp / "var",
        database_url=url,
        blob_url=str(tmp / "var" / "blobs"),
        broker_url=redis_url,
        **API_LIMITS,
    )
    ctx = Context.from_settings(settings)
    yield ctx
    ctx.close()
    if pg_name:
        _drop_database(pg_name)


@pytest.fixture
def api_context(api_settings: Settings) -> Iterator[Context]:
    ctx = Context.from_settings(api_settings)
    yield ctx
    ctx.close()


@pytest.fixture
def api_app(api_context: Context) -> Flask:
    from services.app import create_app

    app = create_app(context=api_context)
    app.config["TESTING"] = True
    return app


@pytest.fixture
def api(api_app: Flask) -> FlaskClient:
    return api_app.test_client()


@pytest.fixture
def redis_client(broker_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(broker_url)
    yield client
    client.close()


def issue_key(ctx: Context, tenant: str, rate_limit: int | None = None) -> IssuedKey:
    with ctx.sessions() as session:
        issued = create_key(session, tenant_name=tenant, rate_limit_per_minute=rate_limit)
        session.commit()
    return issued


@pytest.fixture
def key(api_context: Context) -> IssuedKey:
    return issue_key(api_context, "acme")


@pytest.fixture
def other_key(api_context: Context) -> IssuedKey:
    return issue_key(api_context, "globex")


@pytest.fixture
def auth(key: IssuedKey) -> dict[str, str]:
    return {"Authorization": f"Bearer {key.key}"}


def stage1_messages(client: redis.Redis) -> list[dict[str, Any]]:
    """The Celery messages waiting in the stage-1 list (Redis transport: one list per queue)."""
    import json

    return [json.loads(raw) for raw in client.lrange(queues.STAGE1, 0, -1)]


@dataclass
class ImageMaker:
    """Distinct, valid images on demand (a counter makes every call's bytes different)."""

    count: int = 0

    def __call__(self, fmt: str = "PNG", size: tuple[int, int] = (32, 24), mode: str = "RGB",
                 **save: Any) -> bytes:  # fmt: skip
        self.count += 1
        colour: Any = (self.count * 37 % 256, self.count * 11 % 256, 200)
        if mode in ("L", "I;16"):
            colour = self.count * 97 % 256
        elif mode == "CMYK":
            colour = (*colour, 10)
        img = Image.new(mode, size, colour)
        img.putpixel((0, 0), colour if mode != "I;16" else 40000)
        buf = io.BytesIO()
        img.save(buf, format=fmt, **save)
        return buf.getvalue()


@pytest.fixture
def make_image() -> Callable[..., bytes]:
    return ImageMaker()
