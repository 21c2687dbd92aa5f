"""An upload answered from the cache (the same image was decided before) calls its callback URL
at once, like any other decision; beat is off, so no stale sweep can stand in for it."""

from __future__ import annotations

import pytest
import requests

from cascade.context import Context
from cascade.db.schema import State
from tests.integration.conftest import png_bytes, wait_until
from tests.integration.test_faults import Receiver
from tests.integration.test_stage_workers import activate, all_final, states

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_cache_hit_calls_back_at_once(stack_settings, make_stack, api_key):
    settings = stack_settings.model_copy(update={"callback_allow_private": True})
    receiver = Receiver(settings.callback_secret)
    ctx = Context.from_settings(settings)
    activate(ctx, 1, t1_lo=0.5, t1_hi=0.5, t2_lo=0.5, t2_hi=0.5)  # stage 1 decides everything
    stack = make_stack(settings, beat=False)
    http = requests.Session()
    http.headers.update({"Authorization": f"Bearer {api_key}", "Content-Type": "image/png"})
    first = http.post(f"{stack.url}/v1/images", data=png_bytes(4242), timeout=30)
    assert first.status_code == 202, first.text
    first_id = first.json()["id"]
    wait_until(lambda: all_final(ctx, [first_id]), 60, "the first upload's decision")

    again = http.post(
        f"{stack.url}/v1/images",
        params={"callback_url": receiver.url},
        data=png_bytes(4242),
        timeout=30,
    )
    assert again.status_code == 200, again.text
    body = again.json()
    assert body["decided_by"] == "cache"
    wait_until(lambda: receiver.counts[body["id"]] >= 1, 60, "the cache hit's callback")
    # the receiver counts the POST before it answers; the delivery is recorded after the answer
    wait_until(lambda: states(ctx, [body["id"]])[body["id"]].callback_sent_at is not None, 60,
               "the cache hit's callback recorded")  # fmt: skip
    sub = states(ctx, [body["id"]])[body["id"]]
    assert sub.state == State.DECIDED
    assert receiver.counts[body["id"]] == 1 and receiver.bad_signatures == 0
    http.close()
    receiver.close()
    ctx.close()
