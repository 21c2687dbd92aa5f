"""A stage worker holding a half-full batch (celery-batches buffers messages in memory until a
flush) when its connection is cut or when it is told to stop.

The flush interval is made long (30 s) so the buffer is surely half-full when the fault comes;
nothing here waits for that interval. Faults are driven, not timed: ``CLIENT KILL`` cuts every
connection of the workers at once, SIGTERM is what a supervisor, systemd or Kubernetes sends.
"""

from __future__ import annotations

import os
import signal

import pytest
import redis

from cascade.context import Context
from cascade.db.schema import State
from tests.integration.conftest import wait_until
from tests.integration.test_faults import Receiver
from tests.integration.test_stage_workers import activate, all_final, states, submit

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Images in the buffer: far fewer than the batch size, so only a flush can run them (duplicates
# that come back after the visibility timeout would need minutes to fill a batch).
HELD = 2
BATCH = 64


@pytest.fixture
def half_full(stack_settings, make_stack, tenant_id):
    """A stack (own Redis, no web, no beat) whose stage-1 worker buffers ``HELD`` images."""
    settings = stack_settings.model_copy(
        update={
            "broker_url": None,
            "stage1_batch_size": BATCH,
            "stage1_flush_interval_s": 30.0,
            "callback_allow_private": True,
        }
    )
    receiver = Receiver(settings.callback_secret)
    stack = make_stack(settings, web=False, beat=False)
    ctx = Context.from_settings(settings.model_copy(update={"broker_url": stack.broker_url}))
    activate(ctx, 1, t1_lo=0.5, t1_hi=0.5, t2_lo=0.5, t2_hi=0.5)  # stage 1 decides everything
    client = redis.Redis.from_url(stack.broker_url)
    ids = submit(ctx, tenant_id, range(8100, 8100 + HELD), callback_url=receiver.url)
    wait_until(lambda: int(client.hlen("unacked")) == HELD, 60, "the worker to buffer the images")
    assert not all_final(ctx, ids)
    yield stack, ctx, client, receiver, ids
    receiver.close()
    client.close()
    ctx.close()


def test_a_lost_connection_does_not_strand_a_half_full_batch(half_full):
    _, ctx, client, receiver, ids = half_full
    # Every worker connection is cut; the workers reconnect to the same Redis. Celery clears
    # its timers when it reconnects: a batch buffer waiting on its flush timer must not be
    # left waiting on a timer that no longer exists.
    client.client_kill_filter(_type="normal", skipme=True)
    wait_until(lambda: all_final(ctx, ids), 120, "the buffered images after the reconnect")
    assert all(s.state == State.DECIDED for s in states(ctx, ids).values())
    wait_until(lambda: len(receiver.counts) == HELD, 60, "one callback per image")
    assert max(receiver.counts.values()) == 1


def test_sigterm_flushes_a_half_full_batch_before_the_worker_exits(half_full):
    stack, ctx, client, receiver, ids = half_full
    worker = stack.child("worker-stage1-0")
    os.killpg(worker.process.pid, signal.SIGTERM)
    assert worker.process.wait(timeout=60) == 0
    # Decided by the worker on its way out, and acknowledged: nothing is left to redeliver.
    subs = states(ctx, ids)
    assert all(s.state == State.DECIDED for s in subs.values()), {
        s.id: s.state for s in subs.values()
    }
    assert int(client.hlen("unacked")) == 0 and int(client.llen("stage1")) == 0
    stack.children.remove(worker)
    stack.respawn(worker.name, worker.args)
    wait_until(lambda: len(receiver.counts) == HELD, 60, "one callback per image")
    assert max(receiver.counts.values()) == 1
    assert {s.id: s.decided_at for s in states(ctx, ids).values()} == {
        s.id: s.decided_at for s in subs.values()
    }, "an image was decided again after the restart"
