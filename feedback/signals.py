"""Signals that the cascade is drifting from what its thresholds were tuned for.

- **Labelled errors** from appeals and user reports are *not* a random sample: people appeal
  their own blocks, and report only what they happen to see. They never enter the estimate
  (audit-sourced findings are already in it, as part of the audit sample). They are counted:
  when a window holds more errors of a kind than the active set's estimate predicts for the
  traffic of that window (a Poisson tail test), that is an alert and an early retune which may
  only tighten what is allowed, never loosen it.
- **Score drift**: the population stability index (PSI) of the stage-1 score between a reference
  window and the recent one. Customary reading: < 0.1 stable, 0.1–0.2 some shift, > 0.2 shifted
  enough that the audit sample may no longer describe today's traffic.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt

from feedback.bound import excess_pvalue

PSI_ALERT = 0.2
ERROR_ALERT_LEVEL = 0.01


def psi(
    reference: npt.ArrayLike, recent: npt.ArrayLike, bins: int = 10, eps: float = 1e-4
) -> float:
    """Population stability index ``Σ (q - p)·ln(q / p)`` over quantile bins of the reference.

    Quantile bins give every bin a tenth of the reference; ``eps`` keeps empty bins finite.
    """
    ref = np.asarray(reference, dtype=np.float64)
    new = np.asarray(recent, dtype=np.float64)
    if ref.size == 0 or new.size == 0:
        raise ValueError("PSI needs scores in both windows")
    edges = np.unique(np.quantile(ref, np.linspace(0.0, 1.0, bins + 1)[1:-1]))
    p = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=len(edges) + 1) / ref.size
    q = np.bincount(np.searchsorted(edges, new, side="right"), minlength=len(edges) + 1) / new.size
    p, q = np.clip(p, eps, None), np.clip(q, eps, None)
    return float(np.sum((q - p) * np.log(q / p)))


@dataclass(frozen=True)
class DriftCheck:
    psi: float
    reference_n: int
    recent_n: int
    alert: bool

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def check_drift(
    reference: npt.ArrayLike, recent: npt.ArrayLike, threshold: float = PSI_ALERT
) -> DriftCheck:
    value = psi(reference, recent)
    return DriftCheck(value, int(np.size(reference)), int(np.size(recent)), value > threshold)


@dataclass(frozen=True)
class ErrorCheck:
    """Errors of one kind in a window against what the active set predicts for its traffic."""

    kind: str
    observed: int
    images: int
    predicted_rate: float
    expected: float
    p_value: float
    alert: bool

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def check_error_count(
    kind: str, observed: int, images: int, predicted_rate: float, level: float = ERROR_ALERT_LEVEL
) -> ErrorCheck:
    """Alert when ``observed`` errors are improbably many for ``images × predicted_rate``."""
    expected = images * predicted_rate
    p_value = excess_pvalue(observed, expected)
    return ErrorCheck(kind, observed, images, predicted_rate, expected, p_value, p_value < level)
