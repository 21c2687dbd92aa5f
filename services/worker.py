"""Starting Celery workers and beat with Cascade's tasks (stage, feedback, maintenance)."""

from __future__ import annotations

import importlib
import logging
import os
from typing import Any

from celery import Celery, signals

from cascade import metrics
from cascade.config import Settings
from cascade.tasks import REFRESH_GAUGES_TASK, REQUEUE_STALE_TASK, WorkerRuntime

log = logging.getLogger(__name__)

# Task modules outside `cascade` (arrows point services → feedback → cascade).
EXTRA_TASK_MODULES = ("feedback.tasks",)
READY_MESSAGE = "cascade worker ready"


def build_app(settings: Settings) -> Celery:
    from cascade.celery_app import create_celery

    app = create_celery(settings)
    app.set_default()
    for module in EXTRA_TASK_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            log.warning("task module %s not found; its tasks are not available", module)
    return app


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    return {
        "retune": {
            "task": "cascade.feedback.retune",
            "schedule": float(settings.retune_interval_s),
        },
        "check-errors": {"task": "cascade.feedback.check_errors", "schedule": 300.0},
        "check-drift": {"task": "cascade.feedback.check_drift", "schedule": 900.0},
        "requeue-stale": {
            "task": REQUEUE_STALE_TASK,
            "schedule": 60.0,
            "args": (settings.stale_after_s,),
        },
        "refresh-gauges": {"task": REFRESH_GAUGES_TASK, "schedule": 15.0},
    }


def run_worker(
    settings: Settings,
    *,
    queues: list[str],
    pool: str,
    concurrency: int,
    name: str | None,
    metrics_port: int | None,
    loglevel: str,
) -> None:
    app = build_app(settings)
    runtime: WorkerRuntime = app.conf.cascade_runtime
    port = settings.metrics_port if metrics_port is None else metrics_port
    if port:
        metrics.start_metrics_server(port, addr="0.0.0.0")  # scraped from other hosts

    @signals.worker_process_shutdown.connect(weak=False)
    def _dead(pid: int | None = None, **_: Any) -> None:
        metrics.mark_process_dead(pid or os.getpid())

    @signals.worker_ready.connect(weak=False)
    def _warm(**_: Any) -> None:
        for stage, queue in ((1, "stage1"), (2, "stage2")):
            if queue in queues:
                runtime.runner(stage).warm_up()
        log.info("%s (queues: %s)", READY_MESSAGE, ",".join(queues))

    argv = ["worker", "-Q", ",".join(queues), "-P", pool, "-c", str(concurrency),
            "--loglevel", loglevel, "--without-gossip", "--without-mingle"]  # fmt: skip
    if name:
        argv += ["-n", name]
    app.worker_main(argv)


def run_beat(settings: Settings, *, loglevel: str) -> None:
    app = build_app(settings)
    app.conf.beat_schedule = beat_schedule(settings)
    schedule = settings.var_dir / "celerybeat-schedule"
    schedule.parent.mkdir(parents=True, exist_ok=True)
    app.start(["beat", "--loglevel", loglevel, "--schedule", str(schedule)])
