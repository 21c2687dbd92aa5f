"""A whole Cascade on one machine, as child processes: Redis (unless given), migrations,
stage workers, the callbacks/maintenance worker, beat and the web app.

``cascade up``, ``cascade demo``, ``cascade bench e2e`` and the integration tests all start the
product through this one class, so what is tested is what users run.

Supervision: every child runs in its own process group (a signal reaches gunicorn's workers
too) and gets SIGTERM when this process dies, even by SIGKILL (``services.embedded``). ``stop``
takes the children down in order: the web app first (no new uploads), beat, the workers (a
stage worker runs the batch it holds before it exits) within a drain shorter than the broker's
visibility timeout, Redis last (it writes its AOF out). ``supervised`` does the same when
SIGTERM, SIGINT or SIGHUP arrives.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import requests

from cascade.config import Settings, settings_env, with_local_secrets
from cascade.db.session import upgrade
from services.embedded import RedisProcess, Spawner, free_port, start_redis

log = logging.getLogger(__name__)

READY_LINE = b"cascade worker ready"
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
WEB_GRACE_S = 15.0  # gunicorn's own graceful timeout is 10 s


class StopRequested(BaseException):
    """A stop signal arrived (a BaseException, so no ``except Exception`` swallows it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise StopRequested(signum)


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    args: list[str]
    log_from: int = 0  # where this process's lines start in its (appended) log

    def said(self, line: bytes) -> bool:
        """Whether this process (not an earlier one under the same name) logged ``line``."""
        with open(self.log_path, "rb") as log:
            log.seek(self.log_from)
            return line in log.read()


@dataclass
class Stack:
    """Start with ``start()``, stop with ``stop()`` (or use it as a context manager)."""

    settings: Settings
    web: bool = True
    beat: bool = True
    stage_workers: int = 1  # processes per stage queue
    log_dir: Path | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    redis: RedisProcess | None = None
    redis_persist: bool = True  # the stack's own Redis with AOF (as production runs it)
    children: list[Child] = field(default_factory=list)
    port: int = 0
    spawner: Spawner = field(default_factory=Spawner)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def broker_url(self) -> str:
        if self.settings.broker_url:
            return self.settings.broker_url
        assert self.redis is not None
        return self.redis.url

    def env(self) -> dict[str, str]:
        s = self.settings
        env = dict(os.environ)
        env.update(settings_env(s))
        env.update(
            CASCADE_BROKER_URL=self.broker_url,
            CASCADE_DATABASE_URL=s.database,
            CASCADE_BLOB_URL=s.blobs,
            CASCADE_VAR_DIR=str(s.var_dir.resolve()),
            CASCADE_MODEL_DIR=str(s.model_dir.resolve()),
            PROMETHEUS_MULTIPROC_DIR=str(self._metrics_dir()),
            PYTHONUNBUFFERED="1",
        )
        # numpy's BLAS threads (the OOD gate's kNN search, models.ood) spin while they wait:
        # on a stage's small batches, one thread per process cost 2.3 / 4.7 ms a call against
        # 14.7 / 27 ms with the default of every core (batches of 5 / 30). Read at numpy's
        # import, so it is set here, before the processes start; an explicit value wins.
        env.setdefault("OPENBLAS_NUM_THREADS", "1")
        env.update(self.extra_env)
        return env

    def _metrics_dir(self) -> Path:
        return (self.settings.var_dir / "prometheus").resolve()

    def _logs(self) -> Path:
        path = self.log_dir or self.settings.var_dir / "logs"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _spawn(self, name: str, args: list[str]) -> Child:
        log_path = self._logs() / f"{name}.log"
        log_from = log_path.stat().st_size if log_path.exists() else 0
        handle = open(log_path, "ab")  # noqa: SIM115 - owned by the child for its lifetime
        proc = self.spawner.popen(
            args, env=self.env(), stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )
        child = Child(name, proc, log_path, args, log_from)
        self.children.append(child)
        return child

    def start(self, *, timeout_s: float = 120) -> Stack:
        self.settings = s = with_local_secrets(self.settings)  # the children sign with these
        s.var_dir.mkdir(parents=True, exist_ok=True)
        if not s.broker_url:
            self.redis = start_redis(
                s.var_dir / "redis", persist=self.redis_persist, spawner=self.spawner
            )
        upgrade(s.database)
        shutil.rmtree(self._metrics_dir(), ignore_errors=True)
        self._metrics_dir().mkdir(parents=True)
        cascade = [sys.executable, "-m", "services.cli"]
        for stage in ("stage1", "stage2"):
            for i in range(self.stage_workers):
                self._spawn(
                    f"worker-{stage}-{i}",
                    [*cascade, "worker", "--queues", stage, "--pool", "solo",
                     "--name", f"{stage}-{i}@%h", "--metrics-port", "0"],
                )  # fmt: skip
        self._spawn(
            "worker-cpu",
            [*cascade, "worker", "--queues", "callbacks,maintenance", "--pool", "threads",
             "--concurrency", "4", "--name", "cpu@%h", "--metrics-port", "0"],
        )  # fmt: skip
        if self.beat:
            self._spawn("beat", [*cascade, "beat"])
        if self.web:
            self.port = self.port or free_port()
            self._spawn("web", [*cascade, "serve", "--port", str(self.port), "--workers", "2"])
        self.wait_ready(timeout_s)
        return self

    def wait_ready(self, timeout_s: float) -> None:
        """Wait until the web app answers and every stage worker has said it is ready."""
        deadline = time.monotonic() + timeout_s
        pending = {c.name for c in self.children if c.name.startswith("worker")}
        web_ok = not self.web
        while time.monotonic() < deadline:
            self._check_alive()
            for child in self.children:
                if child.name in pending and child.said(READY_LINE):
                    pending.discard(child.name)
            if not web_ok:
                try:
                    web_ok = requests.get(f"{self.url}/healthz", timeout=1).ok
                except requests.RequestException:
                    web_ok = False
            if web_ok and not pending:
                return
            time.sleep(0.2)
        raise TimeoutError(f"stack not ready after {timeout_s}s; waiting on {sorted(pending)}")

    def run_until_interrupted(self) -> None:
        """Block until Ctrl-C; raise if a child dies meanwhile (its log tail says why)."""
        while True:
            time.sleep(1)
            self._check_alive()

    def _check_alive(self) -> None:
        for child in self.children:
            if child.process.poll() is not None:
                tail = child.log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{child.name} exited ({child.process.returncode}):\n{tail}")

    def child(self, name: str) -> Child:
        return next(c for c in self.children if c.name == name)

    def kill(self, name: str) -> None:
        """SIGKILL a child, as a crash or an evicted pod would (fault tests)."""
        child = self.child(name)
        os.killpg(child.process.pid, signal.SIGKILL)
        child.process.wait()
        self.children.remove(child)

    def respawn(self, name: str, args: list[str], *, timeout_s: float = 120) -> Child:
        """Start a child again under ``name`` and wait until it is ready."""
        child = self._spawn(name, args)
        self.wait_ready(timeout_s)
        return child

    @property
    def drain_s(self) -> float:
        """How long workers may take to finish what they hold: shorter than the visibility
        timeout, after which Redis would hand their messages to someone else anyway."""
        return max(5.0, min(30.0, self.settings.broker_visibility_timeout_s / 2))

    def stop(self) -> None:
        """Stop every child in order: web, beat, stage workers, the other worker, Redis."""
        order = [
            ([c for c in self.children if c.name == "web"], WEB_GRACE_S),
            ([c for c in self.children if c.name == "beat"], 10.0),
            ([c for c in self.children if c.name.startswith("worker-stage")], self.drain_s),
            ([c for c in self.children if c.name.startswith("worker")], self.drain_s),
            (list(self.children), 10.0),  # anything else
        ]
        for group, grace_s in order:
            _terminate([c for c in group if c in self.children], grace_s)
            self.children = [c for c in self.children if c not in group]
        if self.redis is not None:
            self.redis.stop()
            self.redis = None
        self.spawner.close()

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _terminate(children: list[Child], grace_s: float) -> None:
    """SIGTERM each child's process group, wait up to ``grace_s`` for all, SIGKILL the rest."""
    for child in children:
        if child.process.poll() is None:
            _signal_group(child, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for child in children:
        try:
            child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop within %.0f s; killing it", child.name, grace_s)
            _signal_group(child, signal.SIGKILL)
            child.process.wait()


def _signal_group(child: Child, signum: int) -> None:
    with suppress(ProcessLookupError):
        os.killpg(child.process.pid, signum)


@contextmanager
def supervised(stack: Stack, *, timeout_s: float = 120) -> Iterator[Stack]:
    """Start ``stack``, run the body, then stop every child in order — also when SIGTERM,
    SIGINT or SIGHUP arrives (what systemd, Docker, Kubernetes, a terminal or a supervisor
    send; a background job's SIGINT included). Signals during the stop are ignored, so a
    second Ctrl-C cannot leave half the stack running."""
    previous = {sig: signal.signal(sig, _raise_stop) for sig in STOP_SIGNALS}
    try:
        stack.start(timeout_s=timeout_s)
        yield stack
    except StopRequested as stop:
        log.warning("%s received: stopping every child (web, beat, workers, Redis)", stop)
    finally:
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        try:
            stack.stop()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
