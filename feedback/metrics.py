"""Prometheus metrics of the feedback service (names are a public interface, like
:mod:`cascade.metrics`)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

ALERTS = Counter(
    "cascade_feedback_alerts_total",
    "Feedback alerts: labelled errors above prediction (miss, false_block), score drift, "
    "drift guard alarms (drift_guard)",
    ["kind"],
)
RETUNES = Counter(
    "cascade_feedback_retunes_total", "Retunes run, by outcome (certified, fallback)", ["outcome"]
)
LABELLED_ERRORS = Counter(
    "cascade_labelled_errors_total",
    "Labelled errors reported, by kind and source",
    ["kind", "source"],
)
SCORE_PSI = Gauge(
    "cascade_feedback_score_psi",
    "PSI of the stage-1 score, recent vs reference window",
    multiprocess_mode="max",
)
DRIFT_EVIDENCE = Gauge(
    "cascade_feedback_drift_evidence",
    "The drift guard's e-value per test since the active set's window (alarm at the threshold)",
    ["test"],
    multiprocess_mode="max",
)
