"""Starting Celery workers and beat with Cascade's tasks (stage, feedback, maintenance).

This is where the tasks meet an app: importing ``cascade.tasks`` and ``feedback.tasks`` attaches
their module-level tasks to every app the process configures (arrows point services →
feedback → cascade, so ``cascade`` never names ``feedback``'s tasks).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import Celery, bootsteps, signals
from celery.worker import state as worker_state

import cascade.tasks  # noqa: F401  (the stage, callback and maintenance tasks attach to the app)
import feedback.tasks  # noqa: F401  (the feedback tasks attach to the app)
from cascade import metrics
from cascade.celery_app import create_celery
from cascade.config import Settings
from cascade.queues import STAGE1, STAGE2
from cascade.runtime import process_runtime
from cascade.tasknames import (
    CHECK_BROKER_TASK,
    CHECK_DRIFT_TASK,
    CHECK_ERRORS_TASK,
    REFRESH_GAUGES_TASK,
    REQUEUE_STALE_TASK,
    RETUNE_TASK,
    ROLL_UP_TASK,
)
from cascade.tasks import StageTask

log = logging.getLogger(__name__)

READY_MESSAGE = "cascade worker ready"
BROKER_CHECK_S = 10.0  # a broker that lost its data is noticed this soon (maintenance)


class FlushBatchesOnStop(bootsteps.StartStopStep):  # type: ignore[misc]
    """On a warm shutdown (SIGTERM), run the batches a stage worker still buffers while its
    connection is open, so they are decided and acknowledged now instead of coming back from
    the broker later. Not on a reconnect: a lost connection's messages cannot be acknowledged
    (``StageTask.Strategy`` forgets them)."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def stop(self, c: Any) -> None:
        if worker_state.should_stop is None or worker_state.should_terminate is not None:
            return
        for task in c.app.tasks.values():
            if isinstance(task, StageTask):
                task.flush_now()

    shutdown = stop


def build_app(settings: Settings) -> Celery:
    """The app workers and beat run: configured from ``settings``, with every task."""
    app = create_celery(settings)
    app.steps["consumer"].add(FlushBatchesOnStop)
    app.set_default()
    return app


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    return {
        "retune": {"task": RETUNE_TASK, "schedule": float(settings.retune_interval_s)},
        "check-errors": {"task": CHECK_ERRORS_TASK, "schedule": 300.0},
        "check-drift": {"task": CHECK_DRIFT_TASK, "schedule": 900.0},
        "requeue-stale": {
            "task": REQUEUE_STALE_TASK,
            "schedule": 60.0,
            "args": (settings.stale_after_s,),
        },
        "refresh-gauges": {"task": REFRESH_GAUGES_TASK, "schedule": 15.0},
        "check-broker": {"task": CHECK_BROKER_TASK, "schedule": BROKER_CHECK_S},
        "roll-up": {"task": ROLL_UP_TASK, "schedule": 60.0},
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
    port = settings.metrics_port if metrics_port is None else metrics_port
    if port:
        metrics.start_metrics_server(port, addr="0.0.0.0")  # scraped from other hosts

    @signals.worker_process_shutdown.connect(weak=False)
    def _dead(pid: int | None = None, **_: Any) -> None:
        metrics.mark_process_dead(pid or os.getpid())

    @signals.worker_ready.connect(weak=False)
    def _warm(**_: Any) -> None:
        for stage, queue in ((1, STAGE1), (2, STAGE2)):
            if queue in queues:
                process_runtime(app).runner(stage).warm_up()
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
