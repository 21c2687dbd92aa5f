"""Prometheus metrics shared by the API and the workers.

Multiprocess-safe: when ``PROMETHEUS_MULTIPROC_DIR`` is set (the embedded runner and the
container entrypoints set it), every process writes its samples there and the exporters
aggregate them. Names are a public interface: the Grafana dashboard queries them.
"""

from __future__ import annotations

import os
from pathlib import Path

# prometheus_client opens its files in this folder as soon as a metric is created: make sure
# it exists (a container entrypoint that forgets it would otherwise crash at import).
if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

IMAGES = Counter(
    "cascade_images_total", "Images decided, by route and decider", ["route", "decider"]
)
SUBMISSIONS = Counter("cascade_submissions_total", "Images accepted by the API", ["tenant"])
REJECTED = Counter("cascade_rejected_total", "Uploads refused, by error code", ["code"])
CACHE_HITS = Counter("cascade_cache_hits_total", "Decisions answered from the cache", ["kind"])
STAGE_LATENCY = Histogram(
    "cascade_stage_seconds",
    "Wall time of one stage batch (decode + inference + writes)",
    ["stage"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
BATCH_SIZE = Histogram(
    "cascade_batch_size",
    "Images per stage batch",
    ["stage"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
DECISION_LATENCY = Histogram(
    "cascade_decision_seconds",
    "Upload to automatic decision",
    ["decider"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
DEVICE_SECONDS = Counter("cascade_device_seconds_total", "Device busy time", ["stage", "device"])
DOLLARS = Counter("cascade_dollars_total", "Cost in dollars, by bucket", ["bucket"])
# Gauges set by ``cascade.maintenance.refresh_gauges`` from the source of truth (broker, database): several
# processes may refresh them, so the most recent value wins ("mostrecent"), not the largest
# one ever written by a process that has since died.
QUEUE_DEPTH = Gauge(
    "cascade_queue_depth",
    "Messages waiting in a queue",
    ["queue"],
    multiprocess_mode="mostrecent",
)
REVIEW_BACKLOG = Gauge(
    "cascade_review_backlog",
    "Review items waiting",
    ["reason"],
    multiprocess_mode="mostrecent",
)
REVIEW_OLDEST_AGE = Gauge(
    "cascade_review_oldest_age_seconds",
    "Age of the oldest waiting review item",
    multiprocess_mode="mostrecent",
)
THRESHOLD_VERSION = Gauge(
    "cascade_threshold_version",
    "Active threshold-set version",
    multiprocess_mode="mostrecent",
)
IMAGE_ERRORS = Counter("cascade_image_errors_total", "Images that ended in error", ["stage"])
REVIEW_ITEMS = Counter(
    "cascade_review_items_total",
    "Review items opened, by reason (escalation, audit, ood)",
    ["reason"],
)
LABELS = Counter("cascade_labels_total", "Human labels recorded", ["label"])

REVIEW_REASONS = ("escalation", "audit", "ood")


def _zero_known_labels() -> None:
    """Create every known label combination at 0, so the first real event is an increase
    that ``rate()`` can see (a series born at 1 looks like no change to Prometheus)."""
    outcomes, deciders = ("allow", "block"), ("stage1", "stage2", "human", "cache")
    for route in outcomes:
        for decider in deciders:
            IMAGES.labels(route=route, decider=decider)
    for stage in ("stage1", "stage2"):
        for metric in (STAGE_LATENCY, BATCH_SIZE, IMAGE_ERRORS):
            metric.labels(stage=stage)
    for decider in deciders:
        DECISION_LATENCY.labels(decider=decider)
    for bucket in ("stage1", "stage2", "human", "error"):
        DOLLARS.labels(bucket=bucket)
    for reason in REVIEW_REASONS:
        REVIEW_ITEMS.labels(reason=reason)
    for label in ("allow", "block", "skip"):
        LABELS.labels(label=label)
    for code in ("invalid_image", "payload_too_large", "unsupported_media_type", "bad_request",
                 "rate_limited", "unavailable", "unauthorized"):  # fmt: skip
        REJECTED.labels(code=code)
    CACHE_HITS.labels(kind="api")


_zero_known_labels()


def mark_process_dead(pid: int, directory: str | Path | None = None) -> None:
    """Drop a dead process's live gauges (call from gunicorn's ``child_exit`` hook or Celery's
    ``worker_process_shutdown`` signal). Counters and histograms keep their samples."""
    from prometheus_client import multiprocess

    path = directory or os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path:
        multiprocess.mark_process_dead(pid, str(path))


def exposition_registry() -> CollectorRegistry:
    """The registry to expose: all processes' samples in multiprocess mode, else this one's."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


def start_metrics_server(port: int, addr: str = "127.0.0.1") -> None:
    """Serve ``/metrics`` from a worker process (``Settings.metrics_port``), multiprocess-aware."""
    from prometheus_client import start_http_server

    start_http_server(port, addr=addr, registry=exposition_registry())


def observe_batch(
    *,
    stage: str,
    device: str,
    size: int,
    wall_seconds: float,
    device_seconds: float,
    dollars: float,
) -> None:
    """Metrics of one stage batch, as a worker records them next to ``cost.record_batch``."""
    STAGE_LATENCY.labels(stage=stage).observe(wall_seconds)
    BATCH_SIZE.labels(stage=stage).observe(size)
    DEVICE_SECONDS.labels(stage=stage, device=device).inc(device_seconds)
    DOLLARS.labels(bucket=stage).inc(dollars)


def observe_decision(*, route: str, decider: str, latency_seconds: float) -> None:
    """Metrics of one decided image."""
    IMAGES.labels(route=route, decider=decider).inc()
    DECISION_LATENCY.labels(decider=decider).observe(latency_seconds)


def set_state_gauges(
    queue_depths: dict[str, int], review_backlog: dict[str, int], oldest_age_s: float, version: int
) -> None:
    """Mirror state read elsewhere (``cascade.maintenance.refresh_gauges``) into the gauges.
    Queues absent from ``queue_depths`` keep their last value."""
    for name, depth in queue_depths.items():
        QUEUE_DEPTH.labels(queue=name).set(depth)
    for reason in REVIEW_REASONS:
        REVIEW_BACKLOG.labels(reason=reason).set(review_backlog.get(reason, 0))
    REVIEW_OLDEST_AGE.set(oldest_age_s)
    THRESHOLD_VERSION.set(version)


def current_queue_depths() -> dict[str, float]:
    """Queue depths as last set by ``set_state_gauges`` in any process (for the dashboard)."""
    depths: dict[str, float] = {}
    for family in exposition_registry().collect():
        if family.name == "cascade_queue_depth":
            for sample in family.samples:
                depths[sample.labels.get("queue", "")] = sample.value
    return depths
