"""Celery tasks: the two batched stages, callbacks and maintenance.

Tasks are registered on an app built from Settings (``register``), not at import time, so the
batch sizes and flush intervals come from configuration. The heavy state (database engine,
model engines, threshold cache) lives in one ``WorkerRuntime`` per process, created lazily —
never before a fork.
"""

from __future__ import annotations

import logging
import os
import socket
from datetime import timedelta
from typing import Any

from celery import Celery
from celery_batches import Batches
from sqlalchemy import select

from cascade.celery_app import CALLBACK_TASK, RETRY_TASK, STAGE1_TASK, STAGE2_TASK
from cascade.config import Settings
from cascade.context import Context
from cascade.db.schema import State, Submission, utcnow
from cascade.errors import CascadeError
from cascade.pipeline import BatchOutcome, StageRunner
from cascade.thresholds import ThresholdCache

log = logging.getLogger(__name__)

REQUEUE_STALE_TASK = "cascade.maintenance.requeue_stale"
REFRESH_GAUGES_TASK = "cascade.maintenance.refresh_gauges"


class WorkerRuntime:
    """Per-process state of a worker: context, threshold cache, one runner per stage."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._ctx: Context | None = None
        self._runners: dict[int, StageRunner] = {}
        self._thresholds: ThresholdCache | None = None
        self.worker = f"{socket.gethostname()}:{os.getpid()}"

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

    def runner(self, stage: int) -> StageRunner:
        if stage not in self._runners:
            self._runners[stage] = StageRunner(
                stage, self.ctx, lambda: self._load_engine(stage), self.thresholds,
                worker=self.worker,
            )  # fmt: skip
        return self._runners[stage]

    def _load_engine(self, stage: int) -> Any:
        from models.engines import load_engine

        device = "cuda" if self.settings.engine == "tensorrt" else "cpu"
        path = self.settings.model_dir / f"stage{stage}"
        log.info("loading %s engine for stage %d from %s", self.settings.engine, stage, path)
        return load_engine(path, kind=self.settings.engine, device=device)


def _ids(requests: list[Any]) -> list[str]:
    return [str(r.args[0]) for r in requests if r.args]


# Publishing rides out a broker restart of several seconds before giving up.
FOLLOW_UP_RETRY = {"max_retries": 30, "interval_start": 0, "interval_step": 0.5, "interval_max": 1}


def _follow_up(app: Celery, runtime: WorkerRuntime, out: BatchOutcome) -> None:
    """After the batch committed: hand on to stage 2, send callbacks.

    A message that still cannot be published is left to the stale sweep (the database says
    what is unfinished), never allowed to fail the batch that already committed.
    """
    sends = [(STAGE2_TASK, sid) for sid in out.to_stage2]
    sends += [(CALLBACK_TASK, sid) for sid in out.callbacks]
    for task, sid in sends:
        try:
            app.send_task(task, args=[sid], retry=True, retry_policy=FOLLOW_UP_RETRY)
        except Exception:
            log.exception("could not enqueue %s for %s; the stale sweep will", task, sid)


def _run_stage(app: Celery, runtime: WorkerRuntime, stage: int, requests: list[Any]) -> None:
    ids = _ids(requests)
    if not ids:
        return
    try:
        out = runtime.runner(stage).run(ids)
    except Exception:
        # Infrastructure trouble (database away, blob store down): nothing was committed.
        # celery-batches acknowledges the batch whatever happens, so requeue its ids ourselves,
        # with a delay; the attempts counter stops a poison batch from looping for ever.
        log.exception("stage %d batch of %d failed; requeueing it", stage, len(ids))
        app.send_task(RETRY_TASK, args=[stage, ids], countdown=5)
        return
    _follow_up(app, runtime, out)


def register(app: Celery, settings: Settings) -> WorkerRuntime:
    """Register Cascade's tasks on ``app``; returns the process's runtime."""
    runtime = WorkerRuntime(settings)
    app.conf.cascade_runtime = runtime

    @app.task(
        name=STAGE1_TASK,
        base=Batches,
        flush_every=settings.stage1_batch_size,
        flush_interval=settings.stage1_flush_interval_s,
    )
    def stage1(requests: list[Any]) -> None:
        _run_stage(app, runtime, 1, requests)

    @app.task(
        name=STAGE2_TASK,
        base=Batches,
        flush_every=settings.stage2_batch_size,
        flush_interval=settings.stage2_flush_interval_s,
    )
    def stage2(requests: list[Any]) -> None:
        _run_stage(app, runtime, 2, requests)

    @app.task(name=RETRY_TASK)
    def requeue(stage: int, ids: list[str]) -> None:
        task = STAGE1_TASK if stage == 1 else STAGE2_TASK
        for sid in ids:
            app.send_task(task, args=[sid])

    @app.task(
        name=CALLBACK_TASK,
        bind=True,
        autoretry_for=(Exception,),
        retry_backoff=2,
        retry_backoff_max=600,
        retry_jitter=True,
        max_retries=settings.callback_max_retries,
    )
    def callback(self: Any, submission_id: str) -> None:
        from cascade.callbacks import deliver

        try:
            deliver(runtime.ctx, submission_id)
        except CascadeError as exc:  # refused for good (e.g. the URL now resolves privately)
            log.warning("callback for %s not sent: %s", submission_id, exc.message)

    @app.task(name=REQUEUE_STALE_TASK)
    def requeue_stale(older_than_s: int = 600) -> int:
        """Re-enqueue submissions stuck before a decision (e.g. a broker lost a message)."""
        return requeue_stale_submissions(app, runtime.ctx, older_than_s)

    @app.task(name=REFRESH_GAUGES_TASK)
    def refresh_gauges() -> None:
        """Queue depths, review backlog and the active version, for Prometheus."""
        from cascade.metrics import refresh_gauges as refresh

        refresh(runtime.ctx, broker_lists(app))

    return runtime


def broker_lists(app: Celery) -> Any:
    """A Redis client on the broker (queues are Redis lists), or None for other brokers."""
    url = str(app.conf.broker_url or "")
    if not url.startswith(("redis://", "rediss://", "unix://")):
        return None
    import redis

    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


def requeue_stale_submissions(app: Celery, ctx: Context, older_than_s: int) -> int:
    """Re-enqueue what a lost message left behind: undecided submissions and decisions whose
    callback was never delivered. Everything downstream is idempotent, so a duplicate is
    harmless; the age cut-off keeps the sweep away from work still in the queues."""
    cutoff = utcnow() - timedelta(seconds=older_than_s)
    with ctx.sessions() as session:
        rows = session.execute(
            select(Submission.id, Submission.state).where(
                Submission.state.in_([State.QUEUED, State.STAGE1, State.STAGE2]),
                Submission.created_at < cutoff,
            )
        ).all()
        undelivered = session.scalars(
            select(Submission.id).where(
                Submission.state == State.DECIDED,
                Submission.callback_url.is_not(None),
                Submission.callback_sent_at.is_(None),
                Submission.decided_at < cutoff,
            )
        ).all()
    for sid, state in rows:
        app.send_task(STAGE2_TASK if state == State.STAGE2 else STAGE1_TASK, args=[sid])
    for sid in undelivered:
        app.send_task(CALLBACK_TASK, args=[sid])
    if rows or undelivered:
        log.warning("requeued %d stale submissions, %d undelivered callbacks",
                    len(rows), len(undelivered))  # fmt: skip
    return len(rows) + len(undelivered)
