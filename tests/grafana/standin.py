"""Processes for the Prometheus test, run as ``python standin.py api|worker PORT``.

``api``: the real Flask app (``create_app``) served by werkzeug, refreshing the state gauges
every second the way the lead's API loop will. ``worker``: stands in for a Celery worker —
records batches, decisions, labels and costs through ``cascade.metrics`` as a worker does,
and serves its own ``/metrics``. Both read settings from CASCADE_* and the broker from
STANDIN_REDIS_URL, and exit by themselves after STANDIN_LIFETIME_S (bounded even if orphaned).
"""

from __future__ import annotations

import os
import random
import sys
import threading
import time


def _lifetime() -> float:
    return time.monotonic() + float(os.environ.get("STANDIN_LIFETIME_S", "120"))


def _refresh_forever(stop_at: float) -> None:
    import redis

    from cascade import metrics
    from cascade.context import Context

    ctx = Context.from_settings()
    broker = redis.Redis.from_url(os.environ["STANDIN_REDIS_URL"])
    while time.monotonic() < stop_at:
        metrics.refresh_gauges(ctx, broker)
        time.sleep(0.5)


def run_api(port: int) -> None:
    from werkzeug.serving import make_server

    from cascade import metrics
    from services.app import create_app

    metrics.setup_multiprocess(os.environ["STANDIN_METRICS_DIR"])
    stop_at = _lifetime()
    server = make_server("127.0.0.1", port, create_app(), threaded=True)
    threading.Thread(target=_refresh_forever, args=(stop_at,), daemon=True).start()
    threading.Timer(max(0.0, stop_at - time.monotonic()), server.shutdown).start()
    server.serve_forever()


def run_worker(port: int) -> None:
    from cascade import metrics

    metrics.setup_multiprocess(os.environ["STANDIN_METRICS_DIR"])
    metrics.start_metrics_server(port)
    stop_at = _lifetime()
    rng = random.Random(0)
    while time.monotonic() < stop_at:
        for stage, device, size in (("stage1", "cpu", 32), ("stage2", "t4", 4)):
            dev_s = size * (0.004 if stage == "stage1" else 0.03)
            metrics.observe_batch(
                stage=stage,
                device=device,
                size=size,
                wall_seconds=dev_s * 1.3,
                device_seconds=dev_s,
                dollars=dev_s * 0.5 / 3600,
            )
        for decider, route in (
            ("stage1", "allow"),
            ("stage1", "block"),
            ("stage2", "allow"),
            ("human", "block"),
            ("cache", "allow"),
        ):
            metrics.observe_decision(
                route=route, decider=decider, latency_seconds=rng.lognormvariate(-1.5, 0.6)
            )
        metrics.CACHE_HITS.labels(kind="exact").inc()
        metrics.REVIEW_ITEMS.labels(reason="audit").inc()
        metrics.REVIEW_ITEMS.labels(reason="escalation").inc()
        metrics.LABELS.labels(label="block").inc()
        metrics.DOLLARS.labels(bucket="human").inc(0.05)
        metrics.DOLLARS.labels(bucket="error").inc(0.5)
        metrics.SUBMISSIONS.labels(tenant="1").inc(5)
        metrics.REJECTED.labels(code="invalid_image").inc()
        metrics.IMAGE_ERRORS.labels(stage="stage1").inc()
        time.sleep(0.2)


if __name__ == "__main__":
    role, port_arg = sys.argv[1], int(sys.argv[2])
    if role == "api":
        run_api(port_arg)
    else:
        run_worker(port_arg)
