"""What every engine is, and the one scoring rule they share."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from models.preprocess import PreprocessConfig


@runtime_checkable
class Engine(Protocol):
    """A loaded stage model that turns preprocessed images into calibrated P(block).

    ``predict`` takes float32 ``[N, 3, H, W]`` (from ``models.preprocess.preprocess_batch``
    with ``engine.preprocess``) and returns float32 ``[N]`` probabilities of ``block``, the
    stage's temperature already applied, so thresholds mean the same for every engine.
    """

    name: str
    kind: str
    device: str
    preprocess: PreprocessConfig

    def predict(self, batch: np.ndarray) -> np.ndarray: ...


def block_probability(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Softmax over 2 classes at temperature T, as P(class 1), computed stably."""
    logits = np.asarray(logits, dtype=np.float64)
    z = (logits[:, 1] - logits[:, 0]) / temperature
    return (0.5 * (1.0 + np.tanh(0.5 * z))).astype(np.float32)


def check_batch(batch: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """Fail with a clear message on the wrong shape instead of deep inside a runtime."""
    if batch.ndim != 4 or batch.shape[1:] != (3, cfg.size, cfg.size):
        raise ValueError(
            f"expected a float32 batch [N, 3, {cfg.size}, {cfg.size}], got {batch.shape}; "
            "preprocess with the engine's own PreprocessConfig"
        )
    return np.ascontiguousarray(batch, dtype=np.float32)
