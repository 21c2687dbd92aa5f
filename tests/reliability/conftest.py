"""Faults on the real stack: fixtures and the small fault-injecting tools the tests share.

The stack fixtures come from ``tests/integration/conftest.py`` (same tiny real models, same
``Stack`` the product runs); the tools here are real too: a TCP proxy that takes the database
away, a Redis restart on the same port and data folder, an HTTP submitter recording every
answer the API gave.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
import requests
from sqlalchemy import select

from cascade.apikeys import create_key
from cascade.context import Context
from cascade.db.schema import FINAL_STATES, Submission
from services.bench import faults
from services.stack import Stack
from tests.integration.conftest import (  # noqa: F401  (fixtures, re-exported for this folder)
    make_stack,
    png_bytes,
    stack_settings,
    tenant_id,
    tiny_models,
)


@pytest.fixture
def api_key(context: Context) -> str:
    with context.sessions() as session:
        issued = create_key(session, tenant_name="reliability")
        session.commit()
    return issued.key


def restart_redis(stack: Stack, *, down_s: float = 2.0, persist: bool = True) -> None:
    """The stack's own Redis stopped and started again on the same port: with its AOF, as a
    restarted pod with a persistent volume comes back; with ``persist=False``, without its data
    (``services.bench.faults.restart_redis``, the soak's fault)."""
    faults.restart_redis(stack, persist=persist, down_s=down_s)


def final_states(ctx: Context, ids: list[str]) -> dict[str, Submission]:
    with ctx.sessions() as session:
        subs = session.scalars(select(Submission).where(Submission.id.in_(ids))).all()
        return {s.id: s for s in subs}


def all_final(ctx: Context, ids: list[str]) -> bool:
    subs = final_states(ctx, ids)
    return len(subs) == len(ids) and all(s.state in FINAL_STATES for s in subs.values())


def wait_all_final(ctx: Context, ids: list[str], timeout_s: float, what: str) -> None:
    """Wait until every id is final; on time-out, say which are not and where they are stuck."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all_final(ctx, ids):
            return
        time.sleep(0.3)
    subs = final_states(ctx, ids)
    stuck = {i: (s.state, s.attempts, s.s1) for i, s in subs.items() if s.state not in FINAL_STATES}
    missing = [i for i in ids if i not in subs]
    raise AssertionError(
        f"timed out after {timeout_s}s waiting for {what}: {len(stuck)} not final "
        f"(id: state, attempts, s1) {stuck}; {len(missing)} missing {missing[:5]}"
    )


@dataclass
class Submitter:
    """A thread POSTing distinct PNGs to the API, recording every answer it got."""

    url: str
    api_key: str
    first_seed: int = 10_000
    pause_s: float = 0.05
    accepted: list[str] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    retry_after_missing: int = 0
    transport_errors: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Submitter:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        http = requests.Session()
        http.headers["Authorization"] = f"Bearer {self.api_key}"
        seed = self.first_seed
        while not self._stop.is_set():
            seed += 1
            try:
                r = http.post(
                    f"{self.url}/v1/images",
                    data=png_bytes(seed),
                    headers={"Content-Type": "image/png"},
                    timeout=30,
                )
            except requests.RequestException:
                self.transport_errors += 1
            else:
                self.statuses.append(r.status_code)
                if r.status_code in (200, 202):
                    self.accepted.append(r.json()["id"])
                elif r.status_code in (429, 503) and "Retry-After" not in r.headers:
                    self.retry_after_missing += 1
            time.sleep(self.pause_s)
        http.close()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)

    def wait_for(self, count: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.accepted) < count and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(self.accepted) >= count, f"only {len(self.accepted)} accepted in {timeout_s}s"


class TcpProxy:
    """A loopback TCP proxy that can be paused: while paused, open connections are cut and new
    ones are closed at once, as a database that went away would look to its clients."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.paused = threading.Event()
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._closed = threading.Event()
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.paused.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while chunk := src.recv(65536):
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def pause(self) -> None:
        """Cut every open connection and refuse new ones until ``resume``."""
        self.paused.set()
        with self._lock:
            doomed, self._open = self._open, []
        for s in doomed:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def resume(self) -> None:
        self.paused.clear()

    def close(self) -> None:
        self._closed.set()
        self.pause()
        self.listener.close()


@pytest.fixture
def make_proxy() -> Iterator[Callable[[str, int], TcpProxy]]:
    made: list[TcpProxy] = []

    def _make(host: str, port: int) -> TcpProxy:
        proxy = TcpProxy(host, port)
        made.append(proxy)
        return proxy

    yield _make
    for proxy in made:
        proxy.close()
