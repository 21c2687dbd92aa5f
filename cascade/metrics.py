"""Prometheus metrics shared by the API and the workers.

Multiprocess-safe: when ``PROMETHEUS_MULTIPROC_DIR`` is set (the embedded runner and the
container entrypoints set it), every process writes its samples there and the exporters
aggregate them. Names are a public interface: the Grafana dashboard queries them.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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
DEVICE_SECONDS = Counter(
    "cascade_device_seconds_total", "Device busy time", ["stage", "device"]
)
DOLLARS = Counter("cascade_dollars_total", "Cost in dollars, by bucket", ["bucket"])
QUEUE_DEPTH = Gauge(
    "cascade_queue_depth", "Messages waiting in a queue", ["queue"], multiprocess_mode="max"
)
REVIEW_BACKLOG = Gauge(
    "cascade_review_backlog", "Review items waiting", ["reason"], multiprocess_mode="max"
)
REVIEW_OLDEST_AGE = Gauge(
    "cascade_review_oldest_age_seconds",
    "Age of the oldest waiting review item",
    multiprocess_mode="max",
)
THRESHOLD_VERSION = Gauge(
    "cascade_threshold_version", "Active threshold-set version", multiprocess_mode="max"
)
IMAGE_ERRORS = Counter("cascade_image_errors_total", "Images that ended in error", ["stage"])
