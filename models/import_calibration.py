"""Calibrating an imported stage on labelled samples of *our* traffic (temperature or isotonic).

An external model's probabilities were fitted to someone else's data; the feedback service's
thresholds assume ``P(block)`` means what it says on ours. Temperature scaling (one parameter,
``models.calibrate``) is the safe default with few labels; isotonic (``models.isotonic``) fixes any
monotone distortion given a few hundred. The report gives ECE before and after, and after *on
samples the map was not fitted on* (two-fold cross-fitting), since an isotonic fit judged on its
own sample always looks perfect.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.calibrate import expected_calibration_error, fit_temperature
from models.engines.base import block_probability
from models.errors import ModelImportError
from models.isotonic import IsotonicMap, fit_isotonic
from models.preprocess import normalize
from models.samples import Sample, decode_samples

METHODS = ("temperature", "isotonic")
MIN_LABELS = 20


def calibrate(
    directory: Path, samples: Sequence[Sample], method: str
) -> tuple[float, IsotonicMap | None, dict[str, Any]]:
    """``(temperature, isotonic map or None, report)`` fitted on the labelled ``samples``,
    scored by the stage in ``directory`` (its ``model.onnx`` uncalibrated, temperature 1)."""
    if method not in METHODS:
        raise ValueError(f"calibration method must be one of {METHODS}, got {method!r}")
    logits, labels = labelled_logits(directory, samples)
    fitter = _temperature_fitter if method == "temperature" else _isotonic_fitter
    apply_all, fitted = fitter(logits, labels)
    before = block_probability(logits, 1.0)
    report = {
        "method": method,
        "n": len(labels),
        "n_block": int(labels.sum()),
        "accuracy": round(float(np.mean((before >= 0.5) == (labels == 1))), 4),
        "ece_before": round(expected_calibration_error(before, labels), 4),
        "ece_after_in_sample": round(expected_calibration_error(apply_all(logits), labels), 4),
        "ece_after_cross_fitted": round(_cross_fitted_ece(fitter, logits, labels), 4),
    }
    if isinstance(fitted, IsotonicMap):
        return 1.0, fitted, report | {"knots": len(fitted.x)}
    return float(fitted), None, report | {"temperature": round(float(fitted), 4)}


def labelled_logits(directory: Path, samples: Sequence[Sample]) -> tuple[np.ndarray, np.ndarray]:
    from models.engines import load_engine

    chosen = [s for s in samples if s.label is not None]
    engine = load_engine(directory, "onnx")
    (pixels,), kept = decode_samples(chosen, [engine.preprocess])
    labels = np.asarray([chosen[i].label for i in kept], dtype=np.int64)
    if len(labels) < MIN_LABELS or len(set(labels.tolist())) < 2:
        raise ModelImportError(
            f"calibration needs at least {MIN_LABELS} decodable labelled images of both classes "
            f"(allow/ and block/ folders, or a manifest); got {len(labels)} "
            f"({int(labels.sum())} block)"
        )
    x = normalize(pixels, engine.preprocess)
    logits = np.concatenate([engine.logits(x[i : i + 32]) for i in range(0, len(x), 32)])  # type: ignore[attr-defined]
    return logits, labels


Fitter = Callable[[np.ndarray, np.ndarray], tuple[Callable[[np.ndarray], np.ndarray], Any]]


def _temperature_fitter(
    logits: np.ndarray, labels: np.ndarray
) -> tuple[Callable[[np.ndarray], np.ndarray], float]:
    t = fit_temperature(logits, labels)
    return (lambda z: block_probability(z, t)), t


def _isotonic_fitter(
    logits: np.ndarray, labels: np.ndarray
) -> tuple[Callable[[np.ndarray], np.ndarray], IsotonicMap]:
    iso = fit_isotonic(log_odds(logits), labels)
    return (lambda z: iso(log_odds(z))), iso


def log_odds(logits: np.ndarray) -> np.ndarray:
    """What the graph feeds its isotonic map: logit(block) - logit(allow), exactly."""
    logits = np.asarray(logits, np.float64)
    return logits[:, 1] - logits[:, 0]


def _cross_fitted_ece(fitter: Fitter, logits: np.ndarray, labels: np.ndarray) -> float:
    """Fit on one half, score the other, both ways; ECE of the pooled out-of-fold scores."""
    order = np.random.default_rng(0).permutation(len(labels))
    folds = [order[::2], order[1::2]]
    out = np.zeros(len(labels))
    for fit_idx, eval_idx in (folds, folds[::-1]):
        if len(set(labels[fit_idx].tolist())) < 2:
            return float("nan")
        apply, _ = fitter(logits[fit_idx], labels[fit_idx])
        out[eval_idx] = apply(logits[eval_idx])
    return expected_calibration_error(out, labels)
