"""Celery tasks of the feedback service. The lead's beat schedule calls them periodically.

Each builds its own :class:`cascade.context.Context` from the settings and closes it, so tasks
never import the app and hold no connections between runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from celery import shared_task

from cascade.context import Context
from feedback import retune as jobs

T = TypeVar("T")


@contextmanager
def _context() -> Iterator[Context]:
    ctx = Context.from_settings()
    try:
        yield ctx
    finally:
        ctx.close()


def _run(job: Callable[[Context], T]) -> T:
    with _context() as ctx:
        return job(ctx)


@shared_task(name="cascade.feedback.retune")
def retune(reason: str = "scheduled", by: str = "beat") -> dict[str, Any]:
    """Propose new thresholds; activates them when the settings say so and they are certified."""
    proposal = _run(lambda ctx: jobs.retune(ctx, by=by, reason=reason))
    return {
        "version": proposal.version,
        "certified": proposal.optimum.certified,
        "activated": proposal.activated,
        "miss_rate_bound": proposal.optimum.miss_rate_bound,
    }


@shared_task(name="cascade.feedback.check_drift")
def check_drift() -> dict[str, Any] | None:
    check = _run(jobs.check_score_drift)
    return check.as_dict() if check else None


@shared_task(name="cascade.feedback.check_errors")
def check_errors() -> list[dict[str, Any]]:
    return [c.as_dict() for c in _run(jobs.check_errors)]
