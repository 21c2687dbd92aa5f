"""Names of Cascade's Celery tasks and the queue each runs on.

Producers (the web app, the review UI, the workers' follow-ups) send tasks by these names, so
nothing that sends a task imports the task itself. Change a name here only.
"""

from __future__ import annotations

from cascade import queues

STAGE1_TASK = "cascade.stage1"
STAGE2_TASK = "cascade.stage2"
CALLBACK_TASK = "cascade.callback"
REQUEUE_TASK = "cascade.requeue"  # a failed stage batch, sent again after a pause
REQUEUE_STALE_TASK = "cascade.maintenance.requeue_stale"
REFRESH_GAUGES_TASK = "cascade.maintenance.refresh_gauges"
CHECK_BROKER_TASK = "cascade.maintenance.check_broker"
ROLL_UP_TASK = "cascade.maintenance.roll_up"
RETUNE_TASK = "cascade.feedback.retune"
CHECK_ERRORS_TASK = "cascade.feedback.check_errors"
CHECK_DRIFT_TASK = "cascade.feedback.check_drift"

ROUTES: dict[str, dict[str, str]] = {
    STAGE1_TASK: {"queue": queues.STAGE1},
    STAGE2_TASK: {"queue": queues.STAGE2},
    CALLBACK_TASK: {"queue": queues.CALLBACKS},
    REQUEUE_TASK: {"queue": queues.MAINTENANCE},
    "cascade.feedback.*": {"queue": queues.MAINTENANCE},
    "cascade.maintenance.*": {"queue": queues.MAINTENANCE},
}


def stage_task(stage: int) -> str:
    """The task that runs ``stage`` (1 or 2)."""
    if stage not in (1, 2):
        raise ValueError(f"stage must be 1 or 2, not {stage!r}")
    return STAGE1_TASK if stage == 1 else STAGE2_TASK
