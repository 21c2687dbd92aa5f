"""The handles a process needs (settings, database, blob store), built once from settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from cascade.blobs import BlobStore
from cascade.config import Settings, get_settings
from cascade.db.session import make_engine, make_sessionmaker

if TYPE_CHECKING:
    from celery import Celery


@dataclass
class Context:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    blobs: BlobStore
    _celery: Any = field(default=None, repr=False)

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

    @property
    def celery(self) -> Celery:
        """A producer-side Celery app (created on first use; sends tasks by name)."""
        if self._celery is None:
            from cascade.celery_app import create_celery

            self._celery = create_celery(self.settings, register_tasks=False)
        return self._celery

    def send_callbacks(self, submission_ids: list[str]) -> None:
        """Enqueue decision callbacks (call after the decisions were committed)."""
        from cascade.celery_app import CALLBACK_TASK

        for sid in submission_ids:
            self.celery.send_task(CALLBACK_TASK, args=[sid])

    def close(self) -> None:
        self.engine.dispose()
