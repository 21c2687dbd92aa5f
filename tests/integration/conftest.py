"""Fixtures that start the real product: tiny real models, real Redis, real Celery workers."""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from cascade.config import Settings
from cascade.context import Context
from cascade.db.schema import Tenant
from services.stack import Stack


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from models.testing import make_tiny_model_dir

    return make_tiny_model_dir(tmp_path_factory.mktemp("models"), size=32)


@pytest.fixture
def stack_settings(settings: Settings, broker_url: str, tiny_models: Path) -> Settings:
    return settings.model_copy(
        update={
            "broker_url": broker_url,
            "model_dir": tiny_models,
            "engine": "onnx",
            "stage1_batch_size": 8,
            "stage1_flush_interval_s": 0.2,
            "stage2_batch_size": 8,
            "stage2_flush_interval_s": 0.2,
            "audit_rate": 0.0,
            "threshold_refresh_s": 1.0,
            "broker_visibility_timeout_s": 10,
        }
    )


@pytest.fixture
def make_stack(tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    """Start stacks (stopped at teardown); keyword arguments go to ``Stack``."""
    started: list[Stack] = []

    def _make(settings: Settings, **kwargs: object) -> Stack:
        stack = Stack(settings, log_dir=tmp_path / "logs", **kwargs)  # type: ignore[arg-type]
        started.append(stack)
        return stack.start(timeout_s=180)

    yield _make
    for stack in started:
        stack.stop()


@pytest.fixture
def tenant_id(context: Context) -> int:
    with context.sessions() as session:
        tenant = Tenant(name="acme")
        session.add(tenant)
        session.commit()
        return tenant.id


def png_bytes(seed: int, size: int = 48) -> bytes:
    """A distinct small PNG per seed."""
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    PILImage.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
