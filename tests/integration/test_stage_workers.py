"""The cascade on real Celery worker processes, real Redis and a real database."""

from __future__ import annotations

import contextlib
import os
import random

import pytest
from sqlalchemy import func, select

from cascade.context import Context
from cascade.db.schema import (
    FINAL_STATES,
    BatchRecord,
    ReviewItem,
    State,
    Submission,
    ThresholdSetRow,
    ThresholdStatus,
    utcnow,
)
from cascade.dispatch import Dispatcher
from cascade.intake import accept
from tests.integration.conftest import png_bytes, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def activate(ctx: Context, version: int, t1_lo: float, t1_hi: float, t2_lo: float, t2_hi: float):
    with ctx.sessions() as session:
        for row in session.scalars(
            select(ThresholdSetRow).where(ThresholdSetRow.status == ThresholdStatus.ACTIVE)
        ):
            row.status = ThresholdStatus.RETIRED
        session.add(
            ThresholdSetRow(
                version=version, t1_lo=t1_lo, t1_hi=t1_hi, t2_lo=t2_lo, t2_hi=t2_hi,
                status=ThresholdStatus.ACTIVE, created_by="test", activated_at=utcnow(),
            )
        )  # fmt: skip
        session.commit()


def submit(
    ctx: Context, tenant_id: int, seeds: range, callback_url: str | None = None
) -> list[str]:
    ids = []
    with ctx.sessions() as session:
        for seed in seeds:
            accepted = accept(ctx, session, tenant_id=tenant_id, data=png_bytes(seed),
                              rng=random.Random(seed), callback_url=callback_url)  # fmt: skip
            ids.append(accepted.submission.id)
        session.commit()
    dispatcher = Dispatcher(ctx.settings)
    for sid in ids:
        dispatcher.stage1(sid)
    return ids


def states(ctx: Context, ids: list[str]) -> dict[str, Submission]:
    with ctx.sessions() as session:
        subs = session.scalars(select(Submission).where(Submission.id.in_(ids))).all()
        return {s.id: s for s in subs}


def all_final(ctx: Context, ids: list[str]) -> bool:
    subs = states(ctx, ids)
    return len(subs) == len(ids) and all(s.state in FINAL_STATES for s in subs.values())


def test_every_image_gets_scored_routed_and_decided_in_batches(
    stack_settings, make_stack, context, tenant_id
):
    ctx = Context.from_settings(stack_settings)
    # Stage 1 decides nothing (everything is ambiguous), stage 2 decides by its score.
    activate(ctx, 1, t1_lo=0.0, t1_hi=1.0, t2_lo=0.5, t2_hi=0.5)
    make_stack(stack_settings, web=False, beat=False)
    ids = submit(ctx, tenant_id, range(24))
    wait_until(lambda: all_final(ctx, ids), 120, "all 24 images decided")
    subs = states(ctx, ids)
    for sub in subs.values():
        assert sub.state == State.DECIDED, sub.error
        assert sub.s1 is not None and sub.s2 is not None
        assert sub.decided_by == "stage2"
        assert sub.decision == ("block" if sub.s2 >= 0.5 else "allow")
        assert sub.threshold_version == 1
    with ctx.sessions() as session:
        sizes = session.scalars(select(BatchRecord.size).where(BatchRecord.stage == "stage1")).all()
        assert sum(sizes) == 24
        assert max(sizes) > 1, f"stage 1 never batched: {sizes}"
        assert session.scalar(select(func.count()).select_from(ReviewItem)) == 0
    ctx.close()


def test_ambiguous_images_go_to_review_and_audits_run_every_stage(
    stack_settings, make_stack, context, tenant_id
):
    settings = stack_settings.model_copy(update={"audit_rate": 1.0, "double_label_rate": 0.0})
    ctx = Context.from_settings(settings)
    # Stage 1 allows everything; audit still sends each image through stage 2 and to a human.
    activate(ctx, 2, t1_lo=1.0, t1_hi=1.0, t2_lo=0.0, t2_hi=1.0)
    make_stack(settings, web=False, beat=False)
    ids = submit(ctx, tenant_id, range(100, 110))
    wait_until(lambda: all_final(ctx, ids), 120, "10 audited images decided")

    def audited() -> bool:
        with ctx.sessions() as session:
            return session.scalar(select(func.count()).select_from(ReviewItem)) == 10

    wait_until(audited, 60, "10 audit review items")
    for sub in states(ctx, ids).values():
        assert sub.decision == "allow" and sub.decided_by == "stage1"
        assert sub.audit and sub.audit_p == 1.0
        assert sub.s2 is not None  # audit: every stage scored it
    with ctx.sessions() as session:
        reasons = set(session.scalars(select(ReviewItem.reason)))
    assert reasons == {"audit"}
    ctx.close()


def test_new_threshold_set_reaches_running_workers_within_seconds(
    stack_settings, make_stack, context, tenant_id
):
    ctx = Context.from_settings(stack_settings)
    activate(ctx, 3, t1_lo=1.0, t1_hi=1.0, t2_lo=0.0, t2_hi=1.0)  # allow all at stage 1
    make_stack(stack_settings, web=False, beat=False)
    first = submit(ctx, tenant_id, range(200, 204))
    wait_until(lambda: all_final(ctx, first), 60, "first images decided")
    assert {s.decision for s in states(ctx, first).values()} == {"allow"}

    activate(ctx, 4, t1_lo=0.0, t1_hi=0.0, t2_lo=0.0, t2_hi=1.0)  # block all at stage 1
    # The workers re-read thresholds every threshold_refresh_s (1 s here); 5 s is the promise.
    import time

    time.sleep(5)
    second = submit(ctx, tenant_id, range(300, 304))
    wait_until(lambda: all_final(ctx, second), 60, "second images decided")
    subs = states(ctx, second).values()
    assert {s.decision for s in subs} == {"block"}
    assert {s.threshold_version for s in subs} == {4}
    ctx.close()


@pytest.mark.skipif(
    not os.environ.get("CASCADE_TEST_AMQP_URL"),
    reason="CASCADE_TEST_AMQP_URL is not set (.ci/run sets it when RabbitMQ answers on :5672)",
)
def test_the_cascade_runs_on_rabbitmq_as_broker(stack_settings, make_stack, context, tenant_id):
    settings = stack_settings.model_copy(update={"broker_url": os.environ["CASCADE_TEST_AMQP_URL"]})
    ctx = Context.from_settings(settings)
    _purge(ctx)
    activate(ctx, 1, t1_lo=0.0, t1_hi=1.0, t2_lo=0.5, t2_hi=0.5)
    make_stack(settings, web=False, beat=False)
    ids = submit(ctx, tenant_id, range(500, 512))
    wait_until(lambda: all_final(ctx, ids), 120, "12 images decided over RabbitMQ")
    assert all(s.state == State.DECIDED and s.s2 is not None for s in states(ctx, ids).values())
    ctx.close()


def _purge(ctx: Context) -> None:
    """Empty the shared RabbitMQ's queues: earlier runs may have left messages behind."""
    with Dispatcher(ctx.settings).app.connection_for_write() as conn:
        for queue in ("stage1", "stage2", "callbacks", "maintenance"):
            with conn.channel() as channel, contextlib.suppress(Exception):
                channel.queue_purge(queue)  # fails when the queue does not exist yet
