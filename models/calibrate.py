"""Temperature scaling, so a stage's score is a probability the thresholds can rely on.

Why: the feedback service reasons about miss rates at thresholds on P(block); an over-confident
network (the usual case after training to low loss) makes those thresholds brittle. One scalar T
fitted on held-out logits (minimum NLL) fixes confidence without changing any decision at 0.5.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar

from models.engines.base import block_probability

# The search range of the temperature; a fit that lands on either edge is refused by the gate.
TEMPERATURE_RANGE = (0.05, 20.0)


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    p = np.clip(block_probability(logits, temperature).astype(np.float64), 1e-12, 1 - 1e-12)
    return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p)))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """T > 0 minimising the negative log-likelihood of ``labels`` (0/1) on ``logits [N, 2]``."""
    if len(labels) == 0:
        return 1.0
    res = minimize_scalar(
        lambda log_t: nll(logits, labels, float(np.exp(log_t))),
        bounds=(np.log(TEMPERATURE_RANGE[0]), np.log(TEMPERATURE_RANGE[1])),
        method="bounded",
    )
    return float(np.exp(res.x))


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """ECE of the predicted class's confidence, equal-width bins over [0.5, 1]."""
    probs, labels = np.asarray(probs, np.float64), np.asarray(labels)
    if len(labels) == 0:
        return 0.0
    pred = probs >= 0.5
    conf = np.where(pred, probs, 1 - probs)
    correct = pred == (labels == 1)
    edges = np.linspace(0.5, 1.0, bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        sel = idx == b
        if sel.any():
            ece += sel.mean() * abs(correct[sel].mean() - conf[sel].mean())
    return float(ece)


def calibration_report(
    logits: np.ndarray, labels: np.ndarray, temperature: float
) -> dict[str, Any]:
    """Accuracy, NLL and ECE before (T=1) and after temperature scaling."""
    before = block_probability(logits, 1.0)
    after = block_probability(logits, temperature)
    return {
        "temperature": round(temperature, 4),
        "accuracy": round(float(np.mean((before >= 0.5) == (labels == 1))), 4),
        "nll_before": round(nll(logits, labels, 1.0), 4),
        "nll_after": round(nll(logits, labels, temperature), 4),
        "ece_before": round(expected_calibration_error(before, labels), 4),
        "ece_after": round(expected_calibration_error(after, labels), 4),
    }


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = 10) -> list[dict[str, Any]]:
    """Reliability-diagram points: per equal-width bin of P(block), the images in it, their
    mean score and the observed share of harmful ones (a calibrated model lies on y = x)."""
    probs, labels = np.asarray(probs, np.float64), np.asarray(labels)
    idx = np.clip((probs * bins).astype(int), 0, bins - 1)
    out = []
    for b in range(bins):
        sel = idx == b
        if sel.any():
            out.append({
                "bin": [b / bins, (b + 1) / bins],
                "n": int(sel.sum()),
                "mean_score": round(float(probs[sel].mean()), 4),
                "harmful_share": round(float(labels[sel].mean()), 4),
            })  # fmt: skip
    return out
