"""A real ``cascade up`` in its own process (``python -m services.cli up``), as a user or a
supervisor runs it, with what the tests need to see of it: its children, its ports, its logs."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import requests

from cascade.config import Settings
from services.embedded import free_port

ROOT = Path(__file__).resolve().parents[2]


def up_env(settings: Settings, var_dir: Path, models: Path) -> dict[str, str]:
    """The environment of a ``cascade up`` on ``settings``' database, its own var/ and Redis,
    with small batches and a short visibility timeout; no secrets (it makes its own)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASCADE_")}
    env.update(
        CASCADE_ENV="test",
        CASCADE_VAR_DIR=str(var_dir),
        CASCADE_MODEL_DIR=str(models),
        CASCADE_DATABASE_URL=settings.database,
        CASCADE_STAGE1_BATCH_SIZE="8",
        CASCADE_STAGE2_BATCH_SIZE="8",
        CASCADE_STAGE1_FLUSH_INTERVAL_S="0.2",
        CASCADE_STAGE2_FLUSH_INTERVAL_S="0.2",
        CASCADE_AUDIT_RATE="0",
        CASCADE_BROKER_VISIBILITY_TIMEOUT_S="10",
        CASCADE_THRESHOLD_REFRESH_S="1",
        PYTHONUNBUFFERED="1",
    )
    return env


@dataclass
class UpProcess:
    """``cascade up --port PORT`` started with ``env``; its output goes to ``log_path``."""

    env: dict[str, str]
    log_path: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    ignore_sigint: bool = False  # as a shell starts a background job (`cascade up &`)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 240) -> UpProcess:
        seen = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "services.cli", "up", "--port", str(self.port)],
                cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                preexec_fn=_ignore_sigint if self.ignore_sigint else None,
            )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log_path.read_text(errors="replace")[-3000:]
            if b"Cascade is up" in self.log_path.read_bytes()[seen:]:
                requests.get(f"{self.url}/healthz", timeout=5).raise_for_status()
                return self
            time.sleep(0.5)
        raise AssertionError(f"cascade up not ready in {timeout_s}s: {self.log_path}")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def descendants(self) -> list[psutil.Process]:
        return psutil.Process(self.pid).children(recursive=True)

    def child(self, *words: str) -> psutil.Process:
        """The direct child whose command line holds every one of ``words``."""
        for proc in psutil.Process(self.pid).children():
            if all(w in " ".join(proc.cmdline()) for w in words):
                return proc
        raise AssertionError(f"no child of cascade up runs {words}")

    def redis_port(self) -> int:
        redis = self.child("redis-server")  # it rewrites its title: read its listening socket
        return next(c.laddr.port for c in redis.net_connections("tcp") if c.status == "LISTEN")

    def signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def wait(self, timeout_s: float = 180) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout_s)

    def kill_if_running(self) -> None:
        """After a failed test: SIGKILL a ``cascade up`` still running and its descendants."""
        if self.process is None or self.process.poll() is not None:
            return
        procs = [psutil.Process(self.pid), *self.descendants()]
        for proc in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        self.process.wait(timeout=60)
        psutil.wait_procs(procs, timeout=60)


def _ignore_sigint() -> None:
    """In the child before exec: SIGINT ignored, which exec keeps (what ``&`` does)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def alive(procs: list[psutil.Process]) -> list[str]:
    """The ones still running (a zombie waiting for its reaper counts as gone)."""
    running = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                running.append(f"{proc.pid} {' '.join(proc.cmdline())[:80]}")
        except psutil.NoSuchProcess:
            continue
    return running


def wait_all_gone(procs: list[psutil.Process], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while alive(procs) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not alive(procs), f"children outlived cascade up: {alive(procs)}"


def freeze(proc: psutil.Process) -> None:
    os.killpg(proc.pid, signal.SIGSTOP)


def thaw(proc: psutil.Process) -> None:
    os.killpg(proc.pid, signal.SIGCONT)


def nobody_listens(*ports: int) -> bool:
    """No process listens on any of ``ports`` (a connection is refused). Closed connections in
    TIME_WAIT do not count: a restarted server binds with SO_REUSEADDR."""
    for port in ports:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return False
    return True
