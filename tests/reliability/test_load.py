"""Overload, driven deterministically: the stage-1 worker is frozen (SIGSTOP) so the backlog can
only grow, whatever the machine's speed; uploads go on until the API refuses. Backpressure must
refuse politely (503 with Retry-After, never a 5xx or a dropped connection) and exactly at the
limit (the backlog is held atomically across the API's processes: not one image over), nothing
accepted may be lost once the worker is thawed (SIGCONT), and the API must accept again once
the backlog drains. Only counts are asserted; the timed 2x-capacity run is ``cascade bench load``.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
import requests

from cascade.context import Context
from cascade.ratelimit import Backlog, redis_client
from services.bench.loadgen import png
from tests.integration.test_stage_workers import activate
from tests.reliability.conftest import wait_all_final

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MAX_DEPTH = 8
MAX_UPLOADS = 400  # this many uploads without a refusal means backpressure is broken


def _upload(http: requests.Session, url: str, seed: int) -> requests.Response:
    return http.post(
        f"{url}/v1/images", data=png(seed), headers={"Content-Type": "image/png"}, timeout=30
    )


def test_overload_is_refused_politely_loses_nothing_and_recovers(
    stack_settings, make_stack, api_key
):
    settings = stack_settings.model_copy(
        update={"max_queue_depth": MAX_DEPTH, "rate_limit_per_minute": 1_000_000}
    )
    ctx = Context.from_settings(settings)
    activate(ctx, 1, t1_lo=0.2, t1_hi=0.8, t2_lo=0.5, t2_hi=0.5)
    stack = make_stack(settings, beat=False)
    broker = redis_client(stack.broker_url)
    backlog = Backlog(broker, max_depth=MAX_DEPTH)
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {api_key}"
    worker = stack.child("worker-stage1-0").process.pid

    accepted: list[str] = []
    refusals: list[requests.Response] = []
    os.killpg(worker, signal.SIGSTOP)  # stage 1 stops consuming: the queue can only grow
    try:
        for seed in range(MAX_UPLOADS):
            r = _upload(http, stack.url, 50_000 + seed)
            assert r.status_code in (200, 202, 503), (r.status_code, r.text)
            if r.status_code == 503:
                refusals.append(r)
                if len(refusals) >= 5:
                    break
                time.sleep(0.2)
            else:
                accepted.append(r.json()["id"])
        depth_at_refusal = backlog.depth()
    finally:
        os.killpg(worker, signal.SIGCONT)

    assert refusals, f"backpressure never engaged: {len(accepted)} accepted, queue never full"
    assert depth_at_refusal == MAX_DEPTH, depth_at_refusal
    assert len(accepted) == MAX_DEPTH, len(accepted)  # not one over the limit
    for r in refusals:
        assert r.headers.get("Retry-After", "").isdigit(), r.headers
        assert r.json()["error"]["message"], r.text
    assert accepted, "nothing was accepted before the queue filled"

    # Thawed, the worker drains the queue: every accepted image reaches a final state.
    wait_all_final(ctx, accepted, timeout_s=180, what="the accepted images after the thaw")
    deadline = time.monotonic() + 60
    while backlog.depth() >= MAX_DEPTH and time.monotonic() < deadline:
        time.sleep(0.2)

    # Recovered: the API accepts again and those images are decided too.
    again = [_upload(http, stack.url, 90_000 + i) for i in range(5)]
    assert all(r.status_code in (200, 202) for r in again), [r.text for r in again]
    wait_all_final(ctx, [r.json()["id"] for r in again], timeout_s=120, what="recovery uploads")
    http.close()
    broker.close()
    ctx.close()
