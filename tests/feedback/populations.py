"""Synthetic score distributions: a known population the statistics can be checked against."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from feedback.sample import AuditSample


@dataclass(frozen=True, eq=False)
class Population:
    s1: np.ndarray
    s2: np.ndarray
    label: np.ndarray

    @property
    def n(self) -> int:
        return len(self.s1)

    def draw(self, rng: np.random.Generator, n: int, p: float = 0.02) -> AuditSample:
        """An i.i.d. calibration sample of ``n`` images (with replacement)."""
        idx = rng.integers(0, self.n, n)
        return AuditSample.of(self.s1[idx], self.s2[idx], self.label[idx], p)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def population(
    n: int, *, prevalence: float = 0.08, seed: int = 0, drift: float = 0.0
) -> Population:
    """Harmful images score high on both stages; stage 2 separates better than stage 1.

    ``drift`` raises the prevalence linearly along the stream (the second half has more harm),
    which is what makes unweighted audit estimates wrong when the audit rate changes with time.
    """
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 1.0, n)
    label = (rng.random(n) < prevalence * (1.0 + drift * (2 * t - 1))).astype(np.float64)
    z = np.where(label == 1, 1.0, -1.0)
    common = rng.normal(0.0, 0.6, n)  # what both models find hard
    s1 = _sigmoid(1.4 * z - 1.5 + common + rng.normal(0.0, 1.2, n))
    s2 = _sigmoid(2.0 * z - 1.0 + common + rng.normal(0.0, 1.0, n))
    return Population(s1, s2, label)
