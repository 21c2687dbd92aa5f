"""A stage batch writes in bulk: the statements it sends do not grow with its size, its writes
are one transaction after the claim, and running it twice (redelivery) changes nothing twice."""

from __future__ import annotations

import io
import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from PIL import Image
from sqlalchemy import event, func, select

from cascade.context import Context
from cascade.db.schema import ReviewItem, State, Submission
from cascade.intake import accept
from cascade.pipeline import StageRunner
from cascade.thresholds import ThresholdCache
from models.preprocess import PreprocessConfig
from tests.feedback.factories import issue_key
from tests.integration.test_stage_workers import activate


class _Scores:
    """A stand-in engine with a real preprocessing config: scores by the image's mean red."""

    preprocess = PreprocessConfig(size=16)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        red = batch[:, 0].mean(axis=(1, 2))
        return np.where(red < 0, 0.01, np.where(red < 1.0, 0.5, 0.99))


def _png(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    red = int(rng.choice([10, 130, 250]))  # → allow, ambiguous, block
    buf = io.BytesIO()
    Image.new("RGB", (24, 20), (red, seed % 256, 90)).save(buf, format="PNG")
    return buf.getvalue()


def _submit(ctx: Context, tenant: int, seeds: range) -> list[str]:
    ids = []
    with ctx.sessions() as session:
        for seed in seeds:
            sub = accept(ctx, session, tenant_id=tenant, data=_png(seed), rng=random.Random(seed))
            ids.append(sub.submission.id)
        session.commit()
    return ids


@contextmanager
def _statements(ctx: Context) -> Iterator[list[str]]:
    seen: list[str] = []

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        seen.append(statement.split()[0].upper())

    event.listen(ctx.engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(ctx.engine, "before_cursor_execute", count)


def _runner(ctx: Context, stage: int) -> StageRunner:
    return StageRunner(stage, ctx, _Scores, ThresholdCache(ctx.sessions, ttl_s=3600))


def test_round_trips_do_not_grow_with_the_batch(context: Context) -> None:
    activate(context, 1, t1_lo=0.05, t1_hi=0.98, t2_lo=0.4, t2_hi=0.6)  # 0.5: review
    tenant = issue_key(context).tenant_id
    counts = []
    for seeds in (range(0, 6), range(100, 124)):
        ids = _submit(context, tenant, seeds)
        for stage in (1, 2):
            runner = _runner(context, stage)
            runner.thresholds.get()  # the cache's own read is not the batch's
            with _statements(context) as seen:
                runner.run(ids)
            counts.append((stage, len(ids), sorted(seen)))
    small = {stage: seen for stage, n, seen in counts if n == 6}
    large = {stage: seen for stage, n, seen in counts if n == 24}
    assert small == large, counts
    assert all(seen.count("COMMIT") <= 2 for _, _, seen in counts)  # claim + the batch's writes


def test_redelivered_batches_change_nothing_twice(context: Context) -> None:
    activate(context, 1, t1_lo=0.0, t1_hi=1.0, t2_lo=0.4, t2_hi=0.6)  # everything to stage 2
    tenant = issue_key(context).tenant_id
    ids = _submit(context, tenant, range(200, 212))
    assert set(_runner(context, 1).run(ids).to_stage2) == set(ids)
    first = _runner(context, 2).run(ids)
    again = _runner(context, 1).run(ids)  # stage 1 redelivered: hands on, scores nothing
    second = _runner(context, 2).run(ids)  # stage 2 redelivered: skips all
    assert set(again.to_stage2) == set()  # already past stage 2: nothing to hand on
    assert second.skipped == len(ids) and second.decided == [] and second.reviews == []
    with context.sessions() as session:
        items = session.scalar(
            select(func.count()).select_from(ReviewItem).where(ReviewItem.submission_id.in_(ids))
        )
        states = dict(session.execute(select(Submission.id, Submission.state)).all())
        attempts = set(session.scalars(select(Submission.attempts).where(Submission.id.in_(ids))))
    assert items == len(first.reviews) > 0
    assert {states[i] for i in ids} <= {State.DECIDED, State.REVIEW}
    assert attempts == {4}  # every delivery is counted (poison protection)
