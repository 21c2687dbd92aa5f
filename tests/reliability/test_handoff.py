"""A message on its way from Redis to a stage worker when the worker dies.

Redis hands a message to a consumer the moment it answers the consumer's blocking read; if the
consumer then dies before it has recorded the message anywhere, Redis holds no copy. The test
makes that moment happen on purpose: the stage-1 worker is frozen (SIGSTOP) while its blocking
read is outstanding, an image is sent (Redis hands it to the frozen worker), the worker is
SIGKILLed. The image must still be decided once a new worker is up (no beat, no stale sweep:
the broker alone must bring it back).
"""

from __future__ import annotations

import os
import signal
import time

import pytest
import redis

from cascade.context import Context
from cascade.db.schema import State
from tests.integration.conftest import wait_until
from tests.integration.test_stage_workers import activate, all_final, states, submit

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _hand_to_frozen_worker(stack, ctx: Context, tenant_id: int, client: redis.Redis) -> str:
    """Freeze the stage-1 worker and send one image until Redis hands it to the frozen worker
    (the stage1 list is empty afterwards). Returns the image's id; the worker stays frozen."""
    pid = stack.child("worker-stage1-0").process.pid
    for attempt in range(50):
        os.killpg(pid, signal.SIGSTOP)
        (sid,) = submit(ctx, tenant_id, range(7000 + attempt, 7001 + attempt))
        time.sleep(0.3)
        if int(client.llen("stage1")) == 0:
            return sid
        os.killpg(pid, signal.SIGCONT)  # its blocking read had expired: let it take this one
        wait_until(lambda sid=sid: all_final(ctx, [sid]), 60, "the image sent in a miss")
        time.sleep(0.2)
    raise AssertionError("Redis never handed an image to the frozen worker")


def test_worker_killed_while_a_message_is_on_its_way_loses_nothing(
    stack_settings, make_stack, tenant_id
):
    settings = stack_settings.model_copy(update={"broker_url": None})  # the stack's own Redis
    stack = make_stack(settings, web=False, beat=False)
    ctx = Context.from_settings(settings.model_copy(update={"broker_url": stack.broker_url}))
    activate(ctx, 1, t1_lo=0.5, t1_hi=0.5, t2_lo=0.5, t2_hi=0.5)  # stage 1 decides everything
    client = redis.Redis.from_url(stack.broker_url)
    sid = _hand_to_frozen_worker(stack, ctx, tenant_id, client)
    worker = stack.child("worker-stage1-0")
    stack.kill(worker.name)  # SIGKILL while frozen: whatever it received is gone with it
    assert states(ctx, [sid])[sid].state == State.QUEUED
    stack.respawn(worker.name, worker.args)
    wait_until(lambda: all_final(ctx, [sid]), 90, "the image the killed worker was handed")
    assert states(ctx, [sid])[sid].state == State.DECIDED
    client.close()
    ctx.close()
