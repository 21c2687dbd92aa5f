"""A real Prometheus scrapes the real product — the web app (whose ``/metrics`` aggregates the
API and the workers sharing its multiprocess folder) and one real stage-2 worker on its own
metrics port and its own folder, as a worker pod runs in production — while images go through
the HTTP API, both model stages, review, the cache, a refusal and a broken blob. Then every
PromQL expression of the Grafana dashboard returns data from Prometheus' HTTP API, and the
counts Prometheus reports equal what the database says happened.

Loopback only, bounded waits, every process stopped at the end (``make_stack``'s teardown).
"""

from __future__ import annotations

import functools
import math
import os
import random
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import InstrumentedAttribute

from cascade.apikeys import create_key
from cascade.blobs import BlobStore, sha256_hex
from cascade.client import CascadeClient
from cascade.config import Settings
from cascade.context import Context
from cascade.db.schema import FINAL_STATES, Image, ReviewItem, Submission
from cascade.dispatch import Dispatcher
from cascade.errors import CascadeError
from cascade.intake import accept
from cascade.metrics import REVIEW_REASONS
from services.embedded import free_port
from services.grafana.dashboard import build_dashboard, expressions
from services.stack import Stack
from tests.integration import conftest as integration
from tests.integration.conftest import png_bytes, wait_until
from tests.integration.test_stage_workers import activate
from tests.review.factories import PASSWORD, make_user

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(
        not os.path.exists(PROMETHEUS),
        reason=f"Prometheus is not installed at {PROMETHEUS} (scripts/system_deps.sh installs it)",
    ),
]
# The integration fixtures (tiny real models, a real Stack), shared from their conftest.
tiny_models = integration.tiny_models
stack_settings = integration.stack_settings
make_stack = integration.make_stack

# What Grafana substitutes for its variables. The window spans the whole run, so that rates
# over a burst of traffic that ended seconds ago still have a non-zero denominator.
GRAFANA_VARIABLES = {"$__rate_interval": "3m", "$__range": "3m"}
# The tiny random-init models score every image exactly 0.5 (a zero-initialised head), so no
# single threshold set splits them: three waves, each under its own set (t1_lo, t1_hi, t2_lo,
# t2_hi) — allowed at stage 1; blocked at stage 2; escalated to review. The version changes are
# what the dashboard's annotation query marks, and every counter grows between scrapes.
WAVES = (
    (range(0, 10), (1.0, 1.0, 0.0, 1.0)),
    (range(10, 20), (0.0, 1.0, 0.0, 0.0)),
    (range(20, 30), (0.0, 1.0, 0.0, 1.0)),
)
CSRF = re.compile(r'name="csrf[-_]token" (?:value|content)="([^"]+)"')


def _query(base: str, expr: str) -> list[dict[str, object]]:
    r = requests.get(f"{base}/api/v1/query", params={"query": expr}, timeout=5)
    r.raise_for_status()
    body = r.json()
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def _values(base: str, expr: str) -> dict[str, float]:
    """``{first label value or "": value}`` of an instant query."""
    out = {}
    for series in _query(base, expr):
        labels = dict(series["metric"])  # type: ignore[call-overload]
        out[next(iter(labels.values()), "")] = float(series["value"][1])  # type: ignore[index]
    return out


def _nonzero(base: str, expr: str) -> dict[str, float]:
    """``_values`` without the series still at 0 (known label values are created at 0)."""
    return {k: v for k, v in _values(base, expr).items() if v != 0}


def _has_finite_value(result: list[dict[str, object]]) -> bool:
    return any(math.isfinite(float(series["value"][1])) for series in result)  # type: ignore[index]


def _wait_equal(actual: Callable[[], object], expected: object, what: str) -> None:
    """Scrapes lag by up to a second: wait (bounded) for agreement, then assert it."""
    deadline = time.monotonic() + 20
    while (got := actual()) != expected and time.monotonic() < deadline:
        time.sleep(0.2)
    assert got == expected, f"{what}: Prometheus says {got}, the database {expected}"


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], str]]:
    """Start Prometheus scraping ``{job: host:port}`` every second; returns its base URL."""
    procs: list[subprocess.Popen[bytes]] = []

    def _start(targets: dict[str, str]) -> str:
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\nscrape_configs:\n"
            + "".join(
                f"  - job_name: {job}\n    static_configs: [{{targets: ['{target}']}}]\n"
                for job, target in targets.items()
            )
        )
        port = free_port()
        with (tmp_path / "prometheus.log").open("wb") as log:
            procs.append(
                subprocess.Popen(
                    [
                        PROMETHEUS,
                        f"--config.file={config}",
                        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                        f"--web.listen-address=127.0.0.1:{port}",
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: _answers(f"{base}/-/ready", procs[-1]), 60, "Prometheus ready")
        return base

    yield _start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def _answers(url: str, proc: subprocess.Popen[bytes]) -> bool:
    if proc.poll() is not None:
        raise RuntimeError(f"{proc.args!r} exited with {proc.returncode} before serving {url}")
    try:
        return requests.get(url, timeout=1).status_code < 500
    except requests.ConnectionError:
        return False


def _start_workers(stack: Stack, own_dir: Path) -> int:
    """The stage workers, with the command line ``Stack`` uses: stage 1 writes into the shared
    multiprocess folder (exposed by the web app); stage 2 gets its own folder and serves its
    own ``/metrics`` — so no sample is exposed twice. Returns the stage-2 worker's port."""
    cascade = [sys.executable, "-m", "services.cli", "worker", "--pool", "solo"]
    stack.respawn("worker-stage1-0", [*cascade, "--queues", "stage1", "--name", "stage1-0@%h",
                                      "--metrics-port", "0"])  # fmt: skip
    port = free_port()
    own_dir.mkdir(parents=True)
    stack.extra_env["PROMETHEUS_MULTIPROC_DIR"] = str(own_dir)
    try:
        stack.respawn("worker-stage2-0", [*cascade, "--queues", "stage2", "--name",
                                          "stage2-0@%h", "--metrics-port", str(port)])  # fmt: skip
    finally:
        del stack.extra_env["PROMETHEUS_MULTIPROC_DIR"]
    return port


def _label_one_escalation(base_url: str) -> None:
    """Log in to the review UI over HTTP and label the first item (escalations come first)."""
    web = requests.Session()
    token = CSRF.findall(web.get(f"{base_url}/review/login", timeout=10).text)[0]
    form = {"username": "mia", "password": PASSWORD, "csrf_token": token}
    assert web.post(f"{base_url}/review/login", data=form, timeout=10).ok
    token = CSRF.findall(web.get(f"{base_url}/review/", timeout=10).text)[0]
    claimed = web.post(f"{base_url}/review/claim", data={"csrf_token": token},
                       allow_redirects=False, timeout=10)  # fmt: skip
    item = claimed.headers["Location"].rstrip("/").rsplit("/", 1)[-1]
    labelled = web.post(f"{base_url}/review/item/{item}/label",
                        data={"label": "block", "csrf_token": token}, timeout=10)  # fmt: skip
    assert labelled.ok, labelled.text[:500]


def _submit_broken_blob(ctx: Context, tenant_id: int, blobs: Path) -> str:
    """An image accepted intact whose stored bytes then rot: the stage-1 worker fails it."""
    with ctx.sessions() as session:
        sub = accept(ctx, session, tenant_id=tenant_id, data=png_bytes(1000), rng=random.Random())
        session.commit()
        sid = sub.submission.id
        key = session.get(Image, sub.submission.image_sha256).blob_key  # type: ignore[union-attr]
    # Both copies rot: the stage's derivative (what the worker reads) and the original (what it
    # falls back to when the derivative is unreadable).
    for rotten in (key, BlobStore.derivative_key_for(sub.submission.image_sha256)):
        (blobs / rotten).parent.mkdir(parents=True, exist_ok=True)
        (blobs / rotten).write_bytes(b"these bytes are no longer an image")
    Dispatcher(ctx.settings).stage1(sid)
    return sid


def _all_final(ctx: Context, ids: list[str]) -> bool:
    with ctx.sessions() as session:
        states = session.scalars(select(Submission.state).where(Submission.id.in_(ids))).all()
    return len(states) == len(ids) and all(s in FINAL_STATES for s in states)


def _counts(
    ctx: Context, column: InstrumentedAttribute[Any], *where: ColumnElement[bool]
) -> dict[str, float]:
    with ctx.sessions() as session:
        rows = session.execute(select(column, func.count()).where(*where).group_by(column))
        return {str(k): float(n) for k, n in rows}


def _automatic(ctx: Context, ids: list[str]) -> dict[str, float]:
    """Images decided by a model stage, by stage: what ``cascade_images_total`` counts."""
    by = _counts(ctx, Submission.decided_by, Submission.id.in_(ids))
    return {d: n for d, n in by.items() if d in ("stage1", "stage2")}


def _wait_scraped(ctx: Context, base: str, ids: list[str]) -> None:
    """Wait until the images are final and Prometheus has scraped all their decisions."""
    wait_until(lambda: _all_final(ctx, ids), 60, f"{len(ids)} images final")
    decided = {"": sum(_automatic(ctx, ids).values())}
    _wait_equal(functools.partial(_values, base, "sum(cascade_images_total)"), decided,
                "images decided so far")  # fmt: skip


def test_every_dashboard_query_returns_data_from_the_real_product(
    stack_settings: Settings,
    tmp_path: Path,
    make_stack: Callable[..., Stack],
    prometheus: Callable[[dict[str, str]], str],
) -> None:
    settings = stack_settings.model_copy(
        update={"audit_rate": 0.5, "double_label_rate": 0.0, "threshold_refresh_s": 0.5}
    )
    ctx = Context.from_settings(settings)
    with ctx.sessions() as session:
        issued = create_key(session, tenant_name="acme")
        session.commit()
    make_user(ctx, "mia")
    stack = make_stack(settings, web=True, beat=False, stage_workers=0)
    worker_port = _start_workers(stack, tmp_path / "prometheus-stage2")
    base = prometheus(
        {"web": stack.url.removeprefix("http://"), "worker": f"127.0.0.1:{worker_port}"}
    )
    client = CascadeClient(stack.url, issued.key)

    ids = _push_waves(ctx, client, base)
    _push_the_rest(ctx, client, ids, issued.tenant_id, stack.url)

    pending = {expr: _concrete(expr) for expr in expressions(build_dashboard())}
    deadline = time.monotonic() + 30
    while pending and time.monotonic() < deadline:
        for expr, concrete in list(pending.items()):
            if _has_finite_value(_query(base, concrete)):
                del pending[expr]
        time.sleep(1)
    assert not pending, f"no data from Prometheus for: {sorted(pending)}"
    _check_counts(ctx, base, ids)


def _push_waves(ctx: Context, client: CascadeClient, base: str) -> list[str]:
    """Each wave under its threshold set, in halves scraped apart. Returns submission ids."""
    images = [png_bytes(seed) for seeds, _ in WAVES for seed in seeds]
    ids: list[str] = []
    for version, (seeds, thresholds) in enumerate(WAVES, start=1):
        activate(ctx, version, *thresholds)
        time.sleep(2 * ctx.settings.threshold_refresh_s)  # the workers' caches expire
        for half in (seeds[:5], seeds[5:]):  # a series must be scraped at two values to rate
            ids += [client.submit(images[i]).id for i in half]
            _wait_scraped(ctx, base, ids)
    return ids


def _push_the_rest(
    ctx: Context, client: CascadeClient, ids: list[str], tenant_id: int, url: str
) -> None:
    """The rarer events: a cache hit, a refusal, an image error and a human label."""
    with ctx.sessions() as session:
        known = session.scalars(
            select(Submission.image_sha256).where(
                Submission.id.in_(ids), Submission.decided_by == "stage1"
            )
        ).first()
    again = next(png_bytes(s) for w, _ in WAVES for s in w if sha256_hex(png_bytes(s)) == known)
    assert client.submit(again).status_code == 200  # answered from the cache
    with pytest.raises(CascadeError):
        client.submit(b"not an image")
    broken = _submit_broken_blob(ctx, tenant_id, Path(ctx.settings.blobs))
    wait_until(lambda: _all_final(ctx, [broken]), 30, "the broken image fails")
    _label_one_escalation(url)


def _check_counts(ctx: Context, base: str, ids: list[str]) -> None:
    """What Prometheus reports equals what the database says happened (scrapes may lag)."""
    # Both targets were scraped, and each saw its own part of the work (nothing twice).
    assert _values(base, "sum by (job) (up)") == {"web": 1.0, "worker": 1.0}
    auto = _automatic(ctx, ids)
    assert set(auto) == {"stage1", "stage2"}, auto
    deciders = {
        d: n for d, n in _counts(ctx, Submission.decided_by).items()
        if d in ("stage1", "stage2", "human", "cache")
    }  # fmt: skip
    assert deciders.get("human") == 1.0 and deciders.get("cache") == 1.0, deciders
    _wait_equal(lambda: _nonzero(base, "sum by (decider) (cascade_images_total)"), deciders,
                "images by decider")  # fmt: skip
    assert _nonzero(base, 'sum by (job) (cascade_images_total{decider="stage2"})') == {
        "worker": auto["stage2"]
    }
    assert _values(base, "sum(cascade_images_total)") == {"": sum(deciders.values())}
    routes = _counts(ctx, Submission.route, Submission.id.in_(ids),
                     Submission.decided_by.in_(("stage1", "stage2")))  # fmt: skip
    assert routes == {"allow": 10.0, "block": 10.0}, routes
    by_route = 'sum by (route) (cascade_images_total{decider=~"stage1|stage2"})'
    assert _nonzero(base, by_route) == routes
    reviews = _counts(ctx, ReviewItem.reason)
    assert set(reviews) == {"escalation", "audit"}, reviews
    waiting = _counts(ctx, ReviewItem.reason, ReviewItem.state == "pending")
    expected = {
        "sum by (reason) (cascade_review_items_total)": reviews,
        # The gauge has a series for every known reason, waiting or not.
        "max by (reason) (cascade_review_backlog)": {
            r: waiting.get(r, 0.0) for r in REVIEW_REASONS
        },
        "sum by (label) (cascade_labels_total)": {"block": 1.0},
        "sum by (stage) (cascade_image_errors_total)": {"stage1": 1.0},
        "sum(cascade_cache_hits_total)": {"": 1.0},
        "sum by (code) (cascade_rejected_total)": {"invalid_image": 1.0},
        "max(cascade_threshold_version)": {"": float(len(WAVES))},
    }
    for expr, value in expected.items():
        read = _values if "backlog" in expr or "version" in expr else _nonzero
        _wait_equal(functools.partial(read, base, expr), value, expr)


def _concrete(expr: str) -> str:
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    return expr
