"""What a worker process holds: its context, threshold cache, one runner per stage, a dispatcher.

One ``WorkerRuntime`` per process, made on first use in the process that uses it — never
before a fork (a prefork child would inherit database connections, and CUDA cannot start
before a fork) — and made again should the process turn out to be a forked child.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

from celery import Celery

from cascade.config import Settings
from cascade.context import Context
from cascade.dispatch import Dispatcher
from cascade.pipeline import StageRunner
from cascade.ratelimit import Backlog, redis_for
from cascade.thresholds import ThresholdCache

log = logging.getLogger(__name__)


class WorkerRuntime:
    """Per-process state of a worker; everything is created lazily."""

    def __init__(self, settings: Settings, app: Celery) -> None:
        self.settings = settings
        self.dispatcher = Dispatcher(app=app)
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self._ctx: Context | None = None
        self._thresholds: ThresholdCache | None = None
        self._runners: dict[int, StageRunner] = {}
        self._backlog: Backlog | None = None

    @property
    def ctx(self) -> Context:
        if self._ctx is None:
            self._ctx = Context.from_settings(self.settings)
        return self._ctx

    @property
    def thresholds(self) -> ThresholdCache:
        if self._thresholds is None:
            self._thresholds = ThresholdCache(self.ctx.sessions, self.settings.threshold_refresh_s)
        return self._thresholds

    @property
    def backlog(self) -> Backlog | None:
        """The stage-1 backlog the API admits against (None: the broker is not Redis)."""
        if self._backlog is None:
            client = redis_for(self.settings)
            if client is not None:
                self._backlog = Backlog(client, max_depth=self.settings.max_queue_depth)
        return self._backlog

    def runner(self, stage: int) -> StageRunner:
        """The stage's runner; its engine loads on first use (``warm_up`` loads it now)."""
        if stage not in self._runners:
            self._runners[stage] = StageRunner(
                stage, self.ctx, lambda: self._load_engine(stage), self.thresholds,
                worker=self.worker,
            )  # fmt: skip
        return self._runners[stage]

    def _load_engine(self, stage: int) -> Any:
        from models.engines import load_engine
        from models.ood import gate

        device = "cuda" if self.settings.engine == "tensorrt" else "cpu"
        path = self.settings.model_dir / f"stage{stage}"
        log.info("loading %s engine for stage %d from %s", self.settings.engine, stage, path)
        threads = self.settings.engine_threads or None
        return gate(
            load_engine(path, kind=self.settings.engine, device=device, threads=threads), path
        )


_runtime: tuple[int, WorkerRuntime] | None = None


def settings_of(app: Celery) -> Settings:
    """The Settings ``cascade.celery_app.create_celery`` built ``app`` from."""
    settings = app.conf.get("cascade_settings")
    if not isinstance(settings, Settings):
        raise RuntimeError("this Celery app was not made by cascade.celery_app.create_celery")
    return settings


def process_runtime(app: Celery) -> WorkerRuntime:
    """This process's runtime (made now if this process has none yet)."""
    global _runtime
    if _runtime is None or _runtime[0] != os.getpid():
        _runtime = (os.getpid(), WorkerRuntime(settings_of(app), app))
    return _runtime[1]
