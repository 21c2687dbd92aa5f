"""The environment the embedded stack gives its processes."""

from __future__ import annotations

import pytest

from cascade.config import Settings
from services.stack import Stack


def test_processes_get_one_blas_thread_unless_told_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    stack = Stack(Settings(broker_url="redis://127.0.0.1:1/0"))
    assert stack.env()["OPENBLAS_NUM_THREADS"] == "1"
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "4")
    assert stack.env()["OPENBLAS_NUM_THREADS"] == "4"
