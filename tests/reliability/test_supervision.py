"""``cascade up`` stopped as supervisors stop it: SIGTERM (systemd, Docker, Kubernetes) takes
every child down in order; SIGKILL of ``cascade up`` itself still takes every child down (they
get SIGTERM from the kernel when their parent dies). Either way no process and no port is left
behind, and every image the API accepted is decided after ``cascade up`` starts again.

The stage-1 worker is frozen (SIGSTOP) while the images are uploaded, so every one of them is
still undecided when the signal comes, whatever the machine's speed.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from cascade.context import Context
from services.embedded import RedisProcess
from services.stack import Child, Stack
from tests.integration.conftest import png_bytes
from tests.integration.test_stage_workers import activate
from tests.reliability.conftest import wait_all_final
from tests.reliability.upstack import (
    UpProcess,
    alive,
    freeze,
    nobody_listens,
    thaw,
    up_env,
    wait_all_gone,
)

IMAGES = 12


def _upload_while_stage1_is_frozen(up: UpProcess, api_key: str) -> list[str]:
    http = requests.Session()
    http.headers.update({"Authorization": f"Bearer {api_key}", "Content-Type": "image/png"})
    accepted = []
    for seed in range(IMAGES):
        r = http.post(f"{up.url}/v1/images", data=png_bytes(31_000 + seed), timeout=30)
        assert r.status_code == 202, r.text
        accepted.append(r.json()["id"])
    http.close()
    return accepted


def _restart_and_drain(up: UpProcess, ctx: Context, accepted: list[str]) -> None:
    """``cascade up`` again on the same var/: every accepted image is decided; then stop it."""
    again = UpProcess(up.env, up.log_path, port=up.port).start()
    try:
        wait_all_final(ctx, accepted, 180, "the accepted images after the restart")
    finally:
        again.signal(signal.SIGTERM)
        assert again.wait() == 0


@pytest.fixture
def up(settings, tiny_models, tmp_path) -> Iterator[UpProcess]:
    ctx = Context.from_settings(settings)
    activate(ctx, 1, t1_lo=0.5, t1_hi=0.5, t2_lo=0.5, t2_hi=0.5)  # stage 1 decides everything
    ctx.close()
    env = up_env(settings, tmp_path / "var", tiny_models)
    process = UpProcess(env, tmp_path / "up.log").start()
    yield process
    process.kill_if_running()  # a failed test leaves no stack behind


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sigterm_stops_every_child_and_loses_nothing(up, api_key, context):
    children, redis_port = up.descendants(), up.redis_port()
    stage1 = up.child("worker", "stage1")
    freeze(stage1)
    accepted = _upload_while_stage1_is_frozen(up, api_key)
    thaw(stage1)
    up.signal(signal.SIGTERM)
    assert up.wait() == 0, up.log_path.read_text()[-3000:]
    assert not alive(children), alive(children)  # cascade up waited for each of them
    assert nobody_listens(up.port, redis_port)
    _restart_and_drain(up, context, accepted)


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sigkill_of_cascade_up_takes_every_child_down_and_loses_nothing(up, api_key, context):
    children, redis_port = up.descendants(), up.redis_port()
    stage1 = up.child("worker", "stage1")
    freeze(stage1)
    accepted = _upload_while_stage1_is_frozen(up, api_key)
    up.signal(signal.SIGKILL)
    up.wait()
    thaw(stage1)  # a stopped process takes its SIGTERM only once it runs again
    wait_all_gone(children, 120)
    assert nobody_listens(up.port, redis_port)
    _restart_and_drain(up, context, accepted)


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    "signum", [signal.SIGINT, signal.SIGHUP], ids=["sigint_to_a_background_job", "sighup"]
)
def test_sigint_and_sighup_stop_every_child(signum, settings, tiny_models, tmp_path):
    """Ctrl-C's SIGINT even when ``cascade up`` runs as a background job (started with SIGINT
    ignored, as ``&`` does: unhandled, it would be ignored for good) and a terminal's SIGHUP:
    ``cascade up`` exits 0 having stopped every child, and no port is left held."""
    ctx = Context.from_settings(settings)
    activate(ctx, 1, t1_lo=0.5, t1_hi=0.5, t2_lo=0.5, t2_hi=0.5)
    ctx.close()
    env = up_env(settings, tmp_path / "var", tiny_models)
    up = UpProcess(env, tmp_path / "up.log", ignore_sigint=True).start()
    try:
        children, redis_port = up.descendants(), up.redis_port()
        assert children, "cascade up started no child: the test would test nothing"
        up.signal(signum)
        assert up.wait() == 0, up.log_path.read_text()[-3000:]
        assert not alive(children), alive(children)
        assert nobody_listens(up.port, redis_port)
    finally:
        up.kill_if_running()


# -- the order of a stop, with stand-in children ---------------------------------------------

_STANDIN = """
import signal, sys, time
def stop(*_):
    with open(sys.argv[1], "a") as f:
        f.write(sys.argv[2] + "\\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
open(sys.argv[1] + "." + sys.argv[2], "w").close()
while True:
    time.sleep(0.1)
"""


def test_stop_takes_web_beat_workers_then_redis_in_that_order(settings, tmp_path: Path):
    record = tmp_path / "stopped"
    names = ["worker-cpu", "web", "worker-stage2-0", "beat", "worker-stage1-0"]
    stack = Stack(settings, log_dir=tmp_path)

    def standin(name: str) -> subprocess.Popen[bytes]:
        proc = stack.spawner.popen([sys.executable, "-c", _STANDIN, str(record), name],
                                   start_new_session=True)  # fmt: skip
        while not Path(f"{record}.{name}").exists():
            time.sleep(0.05)
        return proc

    stack.children = [Child(n, standin(n), tmp_path / f"{n}.log", []) for n in names]
    stack.redis = RedisProcess(standin("redis"), 0, tmp_path)
    stack.stop()
    order = record.read_text().split()
    assert order[0] == "web" and order[1] == "beat" and order[-1] == "redis", order
    assert set(order[2:4]) == {"worker-stage1-0", "worker-stage2-0"}, order
    assert order[4] == "worker-cpu", order
