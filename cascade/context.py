"""The handles a process needs (settings, database, blob store), built once from settings.

A context is data, not a messenger: what is sent after a commit goes through
``cascade.dispatch.Dispatcher``. That keeps the core's import graph acyclic.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from cascade.blobs import BlobStore
from cascade.config import Settings, get_settings, with_local_secrets
from cascade.db.session import make_engine, make_sessionmaker


@dataclass
class Context:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    blobs: BlobStore

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> Context:
        # Never a placeholder secret: unset ones come from var_dir/secrets.json.
        settings = with_local_secrets(settings or get_settings())
        engine = make_engine(settings.database)
        return cls(
            settings=settings,
            engine=engine,
            sessions=make_sessionmaker(engine),
            blobs=BlobStore(settings.blobs),
        )

    @classmethod
    @contextmanager
    def opened(cls, settings: Settings | None = None) -> Iterator[Context]:
        """A context for one job or command, closed afterwards (it holds no connections
        between runs)."""
        ctx = cls.from_settings(settings)
        try:
            yield ctx
        finally:
            ctx.close()

    def close(self) -> None:
        self.engine.dispose()
