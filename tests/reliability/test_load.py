"""A short load test (the 60 s one is ``cascade bench load``): about twice the measured capacity
with a low ``max_queue_depth``. Backpressure refuses politely, nothing accepted is lost, and the
API accepts again once the load drops. No timing is asserted, only counts."""

from __future__ import annotations

import pytest

from cascade.context import Context
from cascade.ratelimit import redis_client
from services.loadtest import LoadGenerator, run_load_test
from tests.integration.test_stage_workers import activate

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_twice_capacity_is_refused_politely_loses_nothing_and_recovers(
    stack_settings, make_stack, api_key
):
    settings = stack_settings.model_copy(
        update={"max_queue_depth": 8, "rate_limit_per_minute": 1_000_000}
    )
    ctx = Context.from_settings(settings)
    activate(ctx, 1, t1_lo=0.2, t1_hi=0.8, t2_lo=0.5, t2_hi=0.5)
    stack = make_stack(settings, beat=False)
    broker = redis_client(stack.broker_url)
    gen = LoadGenerator(stack.url, api_key, threads=8)
    run = run_load_test(
        gen,
        ctx,
        lambda: int(broker.llen("stage1")),
        duration_s=15,
        probe_s=4,
        probe_rate=30,
        drain_timeout_s=120,
        recovery_s=4,
    )
    overload = run.phase("overload")
    assert run.lost == 0, f"{run.lost} accepted images never reached a final state"
    assert overload.refused > 0, "backpressure never engaged at twice the capacity"
    assert overload.refused_without_retry_after == 0
    assert overload.failed == 0, [s.status for s in overload.samples if s.status >= 500]
    assert overload.accepted_ids, "nothing was accepted under load"
    assert run.recovered, run.phase("recovery").samples
    assert max(d for _, d in run.depth) > 0, "the queue-depth probe saw nothing"
    broker.close()
    ctx.close()
