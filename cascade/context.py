"""The handles a process needs (settings, database, blob store), built once from settings."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from cascade.blobs import BlobStore
from cascade.config import Settings, get_settings
from cascade.db.session import make_engine, make_sessionmaker


@dataclass
class Context:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    blobs: BlobStore

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> Context:
        settings = settings or get_settings()
        engine = make_engine(settings.database)
        return cls(
            settings=settings,
            engine=engine,
            sessions=make_sessionmaker(engine),
            blobs=BlobStore(settings.blobs),
        )

    def close(self) -> None:
        self.engine.dispose()
