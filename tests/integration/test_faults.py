"""Faults on the real stack: a stage worker killed with SIGKILL in the middle of its batches."""

from __future__ import annotations

import json
import os
import signal
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import func, select

from cascade.callbacks import verify
from cascade.context import Context
from cascade.db.schema import BatchRecord, State
from tests.integration.conftest import wait_until
from tests.integration.test_stage_workers import activate, all_final, states, submit

pytestmark = [pytest.mark.integration, pytest.mark.slow]


class Receiver:
    """A real HTTP server on loopback counting (verified) callbacks per submission."""

    def __init__(self, secret: str) -> None:
        self.counts: Counter[str] = Counter()
        self.bad_signatures = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if verify(secret, body, self.headers.get("X-Cascade-Signature", "")):
                    receiver.counts[json.loads(body)["id"]] += 1
                else:
                    receiver.bad_signatures += 1
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/hook"

    def close(self) -> None:
        self.server.shutdown()


def test_worker_killed_mid_batch_loses_nothing_and_calls_back_once(
    stack_settings, make_stack, context, tenant_id
):
    settings = stack_settings.model_copy(
        update={"callback_allow_private": True, "stage1_batch_size": 4}
    )
    receiver = Receiver(settings.callback_secret)
    ctx = Context.from_settings(settings)
    activate(ctx, 1, t1_lo=0.0, t1_hi=1.0, t2_lo=0.5, t2_hi=0.5)  # every image runs both stages
    stack = make_stack(settings, web=False, beat=False)
    worker = stack.child("worker-stage1-0")
    ids: list[str] = []

    def batches() -> int:
        with ctx.sessions() as session:
            return int(session.scalar(select(func.count()).select_from(BatchRecord)) or 0)

    # Mid-batch, whatever the machine's speed: after a batch of a wave is written, the worker is
    # frozen (SIGSTOP) and only killed if images are still undecided; a machine fast enough to
    # finish the wave first gets another wave.
    for wave in range(10):
        done = batches()
        ids += submit(ctx, tenant_id, range(400 + 60 * wave, 460 + 60 * wave),
                      callback_url=receiver.url)  # fmt: skip
        wait_until(lambda done=done: batches() > done, 60, "a batch of the wave")
        os.killpg(worker.process.pid, signal.SIGSTOP)
        if any(s.state == State.QUEUED for s in states(ctx, ids).values()):
            break
        os.killpg(worker.process.pid, signal.SIGCONT)
    else:
        raise AssertionError("ten waves finished before the worker could be frozen mid-way")
    stack.kill("worker-stage1-0")  # SIGKILL: its prefetched, unacknowledged messages stay in Redis
    stack.respawn("worker-stage1-0", worker.args)
    # Redis hands unacknowledged messages out again after the visibility timeout (10 s here).
    wait_until(lambda: all_final(ctx, ids), 120, "every accepted image decided after the kill")
    subs = states(ctx, ids).values()
    assert all(s.state == State.DECIDED for s in subs)
    wait_until(lambda: len(receiver.counts) == len(ids), 60, "one callback per image")
    assert receiver.bad_signatures == 0
    assert max(receiver.counts.values()) == 1, "an image was called back twice"
    receiver.close()
    ctx.close()
