"""Isotonic calibration: a monotone, piecewise-linear map from a score's log-odds to a frequency.

Why besides temperature scaling (``models.calibrate``): an imported model was calibrated on
someone else's traffic, and its miscalibration on ours need not be a single "too confident"
factor. Isotonic regression fits any monotone shape, so it never changes the *order* of scores
(thresholds stay meaningful) while making ``P(block) = 0.3`` mean 30 % on the labelled sample.
It needs more labels than one temperature (a few hundred); with few labels prefer temperature.

The map is compiled into the stage's ONNX graph (``models.onnx_wrap``), so engines need nothing
new and the stage's temperature stays 1. It takes the log-odds, not the probability: the graph
has them exactly, whereas a float32 probability saturates near 0 and 1, where knots crowd and a
rounding step would jump across a steep segment.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import isotonic_regression

EPS = 1e-6  # keeps logit(q) finite: a calibrated 0 or 1 would be "certain", which 200 labels never are


@dataclass(frozen=True)
class IsotonicMap:
    """Knots ``(x, y)``: x strictly increasing log-odds, y non-decreasing calibrated
    probabilities; linear between knots, flat outside (``np.interp``)."""

    x: tuple[float, ...]
    y: tuple[float, ...]

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        q = np.interp(np.asarray(scores, np.float64), self.x, self.y)
        return np.clip(q, EPS, 1 - EPS)

    def segments(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """``(lo, hi, slope, y0)`` with ``q = y0 + sum(slope * (clip(p, lo, hi) - lo))``: the same
        function written with elementwise ops only, which is how the graph computes it."""
        x, y = np.asarray(self.x), np.asarray(self.y)
        slope = np.diff(y) / np.diff(x)
        return x[:-1], x[1:], slope, float(y[0])

    def to_dict(self) -> dict[str, list[float]]:
        return {"x": list(self.x), "y": list(self.y)}


def fit_isotonic(scores: np.ndarray, labels: np.ndarray) -> IsotonicMap:
    """Pool-adjacent-violators on 0/1 ``labels`` ordered by ``scores``; ties pooled first so equal
    scores always map to one value."""
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels, np.float64)
    if len(scores) != len(labels) or len(set(labels.tolist())) < 2:
        raise ValueError("isotonic calibration needs labelled samples of both classes")
    unique, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    means = np.bincount(inverse, weights=labels) / counts
    fitted = isotonic_regression(means, weights=counts).x
    if len(unique) == 1:
        return IsotonicMap((float(unique[0]), float(unique[0]) + 1e-9), (fitted[0], fitted[0]))
    keep = _block_ends(fitted)
    return IsotonicMap(tuple(float(v) for v in unique[keep]), tuple(float(v) for v in fitted[keep]))


def _block_ends(fitted: np.ndarray) -> np.ndarray:
    """Indices of the first and last point of every flat run: interior points of a run add
    nothing to a piecewise-linear interpolation (it is flat there)."""
    change = np.flatnonzero(np.diff(fitted) != 0)
    idx = np.unique(np.concatenate([[0, len(fitted) - 1], change, change + 1]))
    return idx
