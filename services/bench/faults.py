"""Faults the soak injects into a running stack, and what it needs to see them: a callback
receiver that counts deliveries, a throw-away PostgreSQL cluster it can restart, a real
``cascade up`` it can SIGTERM. Every fault is driven (a signal, a restart), never timed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import redis
import requests

from cascade.callbacks import verify
from services.embedded import free_port, start_redis
from services.stack import Stack


class CallbackCounter:
    """A loopback HTTP server counting verified callbacks per submission id."""

    def __init__(self, secret: str) -> None:
        self.counts: Counter[str] = Counter()
        self.bad_signatures = 0
        counter = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if verify(secret, body, self.headers.get("X-Cascade-Signature", "")):
                    counter.counts[json.loads(body)["id"]] += 1
                else:
                    counter.bad_signatures += 1
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# -- Redis ---------------------------------------------------------------------------------
def kill_stage_worker(stack: Stack, name: str, *, queue: str, wait_s: float = 10.0) -> None:
    """SIGKILL a stage worker mid-batch — once it holds messages of ``queue`` (buffered or in
    its batch), or after ``wait_s`` — and start a new one."""
    client = redis.Redis.from_url(stack.broker_url)
    deadline = time.monotonic() + wait_s
    try:
        while time.monotonic() < deadline and not _holds(client, queue):
            time.sleep(0.02)
    finally:
        client.close()
    child = stack.child(name)
    stack.kill(name)
    stack.respawn(name, child.args)


def _holds(client: redis.Redis, queue: str) -> bool:
    """Whether some consumer holds an unacknowledged message of ``queue``."""
    return any(json.loads(record)[2] == queue for record in client.hvals("unacked"))


def restart_redis(stack: Stack, *, persist: bool, down_s: float = 2.0) -> None:
    """Stop the stack's Redis (SIGTERM: it writes its AOF) and start it on the same port; with
    ``persist=False`` its data is gone, as with a pod without a persistent volume."""
    assert stack.redis is not None, "the stack must run its own Redis"
    port, data_dir = stack.redis.port, stack.redis.data_dir
    stack.redis.stop()
    if not persist:
        for path in data_dir.iterdir():
            if path.name != "redis.log":
                shutil.rmtree(path) if path.is_dir() else path.unlink()
    time.sleep(down_s)
    stack.redis = start_redis(data_dir, port=port, persist=persist, spawner=stack.spawner)


def pause_redis(stack: Stack, seconds: float) -> None:
    """The broker unreachable: Redis is frozen (SIGSTOP), so connections hang unanswered, as
    behind a partition, then thawed."""
    assert stack.redis is not None, "the stack must run its own Redis"
    os.kill(stack.redis.process.pid, signal.SIGSTOP)
    try:
        time.sleep(seconds)
    finally:
        os.kill(stack.redis.process.pid, signal.SIGCONT)


# -- PostgreSQL ------------------------------------------------------------------------------
def _pg_bin(name: str) -> str:
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    if found:
        return str(found[-1])
    on_path = shutil.which(name)
    if on_path is None:
        raise RuntimeError(f"no PostgreSQL {name} (looked in /usr/lib/postgresql/*/bin and PATH)")
    return on_path


class ThrowawayPostgres:
    """A PostgreSQL cluster of our own under a temporary folder (initdb + pg_ctl), on a free
    port: restarting it disturbs nobody else's server. As root it runs as ``postgres``."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="cascade-soak-pg-"))
        self.port = free_port()
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self._as:
            shutil.chown(self.dir, "postgres")
        self._run(_pg_bin("initdb"), "-D", str(self.dir / "data"), "-A", "trust", "-U", "postgres")
        self.start()
        self._run(_pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                  "cascade")  # fmt: skip

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/cascade"

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as, *args], check=True, capture_output=True, cwd=self.dir)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1"
        self._run(_pg_bin("pg_ctl"), "-D", str(self.dir / "data"), "-l", str(self.dir / "log"),
                  "-o", options, "-w", "start")  # fmt: skip

    def stop(self) -> None:
        self._run(_pg_bin("pg_ctl"), "-D", str(self.dir / "data"), "-m", "fast", "-w", "stop")

    def restart(self, down_s: float = 5.0) -> None:
        """Stop (fast: open connections are cut), stay down ``down_s``, start again."""
        self.stop()
        time.sleep(down_s)
        self.start()

    def close(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


# -- the whole stack -------------------------------------------------------------------------
class CascadeUp:
    """A real ``cascade up`` (``python -m services.cli up``) in its own process."""

    def __init__(self, env: dict[str, str], log_path: Path, port: int | None = None) -> None:
        self.env = env
        self.log_path = log_path
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 300) -> CascadeUp:
        seen = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "services.cli", "up", "--port", str(self.port)],
                env=self.env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"cascade up exited; see {self.log_path}")
            if b"Cascade is up" in self.log_path.read_bytes()[seen:]:
                requests.get(f"{self.url}/healthz", timeout=5).raise_for_status()
                return self
            time.sleep(0.5)
        raise TimeoutError(f"cascade up not ready after {timeout_s}s; see {self.log_path}")

    def terminate(self, timeout_s: float = 180) -> int:
        """SIGTERM, as systemd, Docker or Kubernetes stop it; returns its exit status."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout_s)
