"""Celery tasks of the feedback service; beat's schedule (``services.worker``) calls them.

Each opens its own :class:`cascade.context.Context` from the settings and closes it, so tasks
never import the app and hold no connections between runs.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task

from cascade.context import Context
from cascade.tasknames import CHECK_DRIFT_TASK, CHECK_ERRORS_TASK, RETUNE_TASK
from feedback.drift_guard import guard
from feedback.error_alerts import check_errors as check_labelled_errors
from feedback.retune import retune as retune_thresholds
from feedback.score_alerts import check_score_drift


@shared_task(name=RETUNE_TASK)
def retune(reason: str = "scheduled", by: str = "beat") -> dict[str, Any]:
    """Propose new thresholds; activates them when the settings say so and they are certified."""
    with Context.opened() as ctx:
        proposal = retune_thresholds(ctx, by=by, reason=reason)
    return {
        "version": proposal.version,
        "certified": proposal.optimum.certified,
        "activated": proposal.activated,
        "miss_rate_bound": proposal.optimum.miss_rate_bound,
    }


@shared_task(name=CHECK_DRIFT_TASK)
def check_drift() -> dict[str, Any]:
    """The drift guard on audit labels (tightens on an alarm), and PSI of stage-1 scores."""
    with Context.opened() as ctx:
        report = guard(ctx)
        check = check_score_drift(ctx)
    return {
        "guard": report.as_dict() if report else None,
        "psi": check.as_dict() if check else None,
    }


@shared_task(name=CHECK_ERRORS_TASK)
def check_errors() -> list[dict[str, Any]]:
    with Context.opened() as ctx:
        return [c.as_dict() for c in check_labelled_errors(ctx)]
