"""A whole Cascade for one benchmark run, thrown away afterwards: its own Redis, SQLite and blob
store in a temporary folder, the stage workers, the web app and an API key."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cascade.apikeys import create_key
from cascade.config import Settings
from cascade.context import Context
from cascade.db.session import session_scope
from services.stack import Stack


@dataclass
class Throwaway:
    """A running throw-away stack: the ``Stack``, a context on its database, an API key."""

    stack: Stack
    ctx: Context
    api_key: str
    settings: Settings


def demo_model_dir(settings: Settings) -> Path:
    """The demo models (trained on first use, minutes on a CPU, once)."""
    from models.demo import ensure_demo_models

    ensure_demo_models(settings.model_dir, settings.var_dir / "data")
    return settings.model_dir


@contextmanager
def throwaway_stack(
    base: Settings, *, model_dir: Path, tenant: str, keep: bool = False, **overrides: Any
) -> Iterator[Throwaway]:
    """Start a stack from ``base`` with fresh state, no beat and no audits (``overrides`` on
    top); stop it and delete its folder afterwards (``keep``: leave it, e.g. to trace a lost
    image in its database and logs)."""
    tmp = tempfile.mkdtemp(prefix=f"cascade-bench-{tenant}-")
    try:
        settings = base.model_copy(
            update={
                "var_dir": Path(tmp),
                "database_url": None,
                "blob_url": None,
                "broker_url": None,
                "audit_rate": 0.0,
                "model_dir": model_dir.resolve(),
                **overrides,
            }
        )
        with Stack(settings, beat=False) as stack, Context.opened(settings) as ctx:
            with session_scope(ctx.sessions) as session:
                key = create_key(session, tenant_name=tenant).key
            yield Throwaway(stack, ctx, key, settings)
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)
