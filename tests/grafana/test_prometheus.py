"""A real Prometheus scrapes a running API process and a stand-in worker process (both in
multiprocess mode); then every PromQL expression of the Grafana dashboard returns data from
Prometheus' HTTP API. Loopback only, bounded waits, every process stopped at the end."""

from __future__ import annotations

import math
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from sqlalchemy import update

from cascade.config import Settings
from cascade.context import Context
from cascade.db.schema import ThresholdSetRow
from services.grafana.dashboard import build_dashboard, expressions

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
STANDIN = Path(__file__).with_name("standin.py")
# What Grafana substitutes for its variables, at a scale that suits a one-second scrape.
GRAFANA_VARIABLES = {"$__rate_interval": "10s", "$__range": "1m"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(url: str, timeout_s: float, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode} before serving {url}")
        try:
            if requests.get(url, timeout=1).status_code < 500:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout_s} s")


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    if os.environ.get("CASCADE_TEST_REDIS_URL"):
        yield os.environ["CASCADE_TEST_REDIS_URL"]
        return
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("no CASCADE_TEST_REDIS_URL and no redis-server binary")
    port = _free_port()
    proc = subprocess.Popen(
        [
            server,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


class Stack:
    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
        out = log.open("wb")
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


@pytest.fixture
def stack() -> Iterator[Stack]:
    s = Stack()
    yield s
    s.stop()


def _wait_for(check: Callable[[], object], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise TimeoutError(f"waited {timeout_s} s for {what}")


def _query(base: str, expr: str) -> list[dict[str, object]]:
    r = requests.get(f"{base}/api/v1/query", params={"query": expr}, timeout=5)
    r.raise_for_status()
    body = r.json()
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def _has_finite_value(result: list[dict[str, object]]) -> bool:
    return any(math.isfinite(float(series["value"][1])) for series in result)  # type: ignore[index]


def test_every_dashboard_query_returns_data(
    settings: Settings, context: Context, redis_url: str, stack: Stack, tmp_path: Path
) -> None:
    if not os.path.exists(PROMETHEUS):
        pytest.skip("Prometheus is not installed (scripts/system_deps.sh installs it)")
    import redis

    with context.sessions() as session:
        for v in (1, 2):
            session.add(
                ThresholdSetRow(
                    version=v,
                    t1_lo=0.1,
                    t1_hi=0.9,
                    t2_lo=0.1,
                    t2_hi=0.9,
                    status="active" if v == 1 else "proposed",
                    created_by="t",
                )
            )
        session.commit()
    broker = redis.Redis.from_url(redis_url)
    broker.delete("stage1")
    broker.rpush("stage1", *[b"msg"] * 3)

    api_port, worker_port, prom_port = _free_port(), _free_port(), _free_port()
    base_env = {
        **os.environ,
        "CASCADE_DATABASE_URL": settings.database,
        "CASCADE_VAR_DIR": str(settings.var_dir),
        "CASCADE_BLOB_URL": settings.blobs,
        "CASCADE_SECRET_KEY": settings.secret_key,
        "CASCADE_ENV": "test",
        "STANDIN_REDIS_URL": redis_url,
        "STANDIN_LIFETIME_S": "150",
    }
    base_env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    api = stack.start(
        [sys.executable, str(STANDIN), "api", str(api_port)],
        {**base_env, "STANDIN_METRICS_DIR": str(tmp_path / "mp-api")},
        tmp_path / "api.log",
    )
    worker = stack.start(
        [sys.executable, str(STANDIN), "worker", str(worker_port)],
        {**base_env, "STANDIN_METRICS_DIR": str(tmp_path / "mp-worker")},
        tmp_path / "worker.log",
    )
    _wait_http(f"http://127.0.0.1:{api_port}/metrics", 60, api)
    _wait_http(f"http://127.0.0.1:{worker_port}/metrics", 60, worker)

    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: api\n    static_configs: [{{targets: ['127.0.0.1:{api_port}']}}]\n"
        f"  - job_name: worker\n    static_configs: [{{targets: ['127.0.0.1:{worker_port}']}}]\n"
    )
    prom = stack.start(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ],
        dict(os.environ),
        tmp_path / "prometheus.log",
    )
    base = f"http://127.0.0.1:{prom_port}"
    _wait_http(f"{base}/-/ready", 60, prom)

    # Once Prometheus has seen version 1, activate version 2: the annotation query must see it.
    _wait_for(lambda: _query(base, "max(cascade_threshold_version) == 1"), 30, "version 1 scraped")
    with context.sessions() as session:
        session.execute(update(ThresholdSetRow).values(status="retired"))
        session.execute(
            update(ThresholdSetRow).where(ThresholdSetRow.version == 2).values(status="active")
        )
        session.commit()

    pending = {}
    for expr in expressions(build_dashboard()):
        concrete = expr
        for name, value in GRAFANA_VARIABLES.items():
            concrete = concrete.replace(name, value)
        pending[expr] = concrete
    deadline = time.monotonic() + 60
    while pending and time.monotonic() < deadline:
        for expr, concrete in list(pending.items()):
            if _has_finite_value(_query(base, concrete)):
                del pending[expr]
        time.sleep(1)
    assert not pending, f"no data from Prometheus for: {sorted(pending)}"

    # Both processes were scraped, and the gauges carry what the API process refreshed.
    up = {s["metric"]["job"]: s["value"][1] for s in _query(base, "up")}  # type: ignore[index]
    assert up == {"api": "1", "worker": "1"}
    depth = _query(base, 'cascade_queue_depth{queue="stage1"}')
    assert [float(s["value"][1]) for s in depth] == [3.0]  # type: ignore[index]
    assert float(_query(base, "max(cascade_threshold_version)")[0]["value"][1]) == 2.0  # type: ignore[index]
