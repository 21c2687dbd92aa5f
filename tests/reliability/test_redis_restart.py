"""Redis (the broker) restarts in the middle of a run — with AOF persistence as production runs
it, and without (its data gone): every image the API accepted still reaches a final state, and
the API and the workers reconnect by themselves. The same run's logs are then searched for its
secrets."""

from __future__ import annotations

import pytest

from cascade.context import Context
from cascade.db.schema import State
from cascade.dispatch import Dispatcher
from cascade.tasknames import CHECK_BROKER_TASK
from tests.integration.test_stage_workers import activate
from tests.reliability.conftest import (
    Submitter,
    all_final,
    final_states,
    restart_redis,
    wait_all_final,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.parametrize("persist", [True, False], ids=["aof", "no-aof"])
def test_redis_restart_mid_run_loses_nothing_and_everyone_reconnects(
    stack_settings, make_stack, context, api_key, persist
):
    settings = stack_settings.model_copy(update={"broker_url": None})  # the stack's own Redis
    ctx = Context.from_settings(settings)
    activate(ctx, 1, t1_lo=0.0, t1_hi=1.0, t2_lo=0.5, t2_hi=0.5)  # every image runs both stages
    stack = make_stack(settings, beat=False)
    producer = Dispatcher(settings.model_copy(update={"broker_url": stack.broker_url}))
    producer.send(CHECK_BROKER_TASK)  # as beat does every 10 s: the marker goes in
    submitter = Submitter(stack.url, api_key).start()
    try:
        submitter.wait_for(20, 60)
        before = list(submitter.accepted)
        assert not all_final(ctx, before), "everything was decided before the fault"
        restart_redis(stack, down_s=2.0, persist=persist)
        during = len(submitter.accepted)
        submitter.wait_for(during + 20, 90)  # the API takes uploads again after the restart
    finally:
        submitter.stop()
    accepted = list(submitter.accepted)
    after = accepted[during:]
    # Nothing accepted is lost. With AOF, images queued, prefetched, buffered or mid-batch at the
    # restart come back from Redis (unacknowledged ones after the visibility timeout, 10 s
    # here): no sweep is run. Without AOF every message is gone; beat's broker check (every
    # 10 s) notices the marker key went with them and sends everything unfinished again. It
    # is sent here as beat would, so the test need not run beat.
    if not persist:
        producer.send(CHECK_BROKER_TASK)
    wait_all_final(ctx, accepted, 120, "every accepted image final after restart")
    subs = final_states(ctx, accepted)
    assert all(s.state == State.DECIDED for s in subs.values()), {
        s.id: (s.state, s.error) for s in subs.values() if s.state != State.DECIDED
    }
    assert all(subs[i].s2 is not None for i in after), "stage 2 did not reconnect"
    assert len(set(accepted)) == len(accepted)
    assert not [s for s in submitter.statuses if s >= 500 and s != 503], submitter.statuses
    assert submitter.retry_after_missing == 0
    # Secrets never reach a log: the API key, the session secret, the callback secret.
    logs = {p.name: p.read_text(errors="replace") for p in stack._logs().glob("*.log")}
    logs["redis.log"] = (stack.redis.data_dir / "redis.log").read_text(errors="replace")
    for name, secret in [
        ("API key", api_key),
        ("API key secret part", api_key.split("_", 2)[2]),
        ("secret_key", settings.secret_key),
        ("callback_secret", settings.callback_secret),
    ]:
        leaked = [log for log, text in logs.items() if secret in text]
        assert not leaked, f"{name} appears in {leaked}"
    assert logs.get("web.log") and logs.get("worker-stage1-0.log"), "the logs searched are empty"
    ctx.close()
