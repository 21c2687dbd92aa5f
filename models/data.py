"""Reading the synthetic (or any ImageFolder + manifest) data set for training and evaluation.

Images go through exactly the serving path: ``decode_image`` (bytes → RGB) then
``resize_image``; only ``normalize`` is deferred to batch time so the cache holds compact uint8
arrays. ``preprocess`` is ``normalize(resize_image(...))``, hence training and serving agree.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.preprocess import PreprocessConfig, decode_image, normalize, resize_image
from models.registry import CLASS_NAMES

MAX_PIXELS = 40_000_000


@dataclass(frozen=True)
class Split:
    """One split in memory: uint8 pixels ``[N, S, S, 3]``, labels ``[N]`` and manifest rows."""

    pixels: np.ndarray
    labels: np.ndarray
    rows: list[dict[str, Any]]

    def __len__(self) -> int:
        return len(self.labels)

    def inputs(self, cfg: PreprocessConfig) -> np.ndarray:
        """Float32 model inputs ``[N, 3, S, S]`` (normalised, as the engines expect)."""
        return normalize(self.pixels, cfg)

    @property
    def difficulty(self) -> np.ndarray:
        return np.asarray([r.get("difficulty", 0.0) for r in self.rows], dtype=np.float64)


def read_manifest(data_dir: Path) -> list[dict[str, Any]]:
    path = Path(data_dir) / "manifest.jsonl"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found; generate a data set with `cascade data generate --out {data_dir}`."
        )
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def load_split(
    data_dir: Path, split: str, cfg: PreprocessConfig, *, limit: int | None = None
) -> Split:
    """Decode and resize one split, cached under ``<data_dir>/.cache`` by content and config."""
    data_dir = Path(data_dir)
    rows = [r for r in read_manifest(data_dir) if r.get("split") == split][:limit]
    if not rows:
        raise ValueError(f"split {split!r} of {data_dir} is empty")
    key = hashlib.sha256(
        json.dumps([cfg.size, cfg.interpolation, [r["file"] for r in rows]]).encode()
        + (data_dir / "manifest.jsonl").read_bytes()
    ).hexdigest()[:16]
    cache = data_dir / ".cache" / f"{split}-{cfg.size}-{key}.npz"
    labels = np.asarray([CLASS_NAMES.index(r["label"]) for r in rows], dtype=np.int64)
    if cache.is_file():
        return Split(np.load(cache)["pixels"], labels, rows)
    pixels = np.stack([load_pixels(data_dir / r["file"], cfg) for r in rows])
    cache.parent.mkdir(exist_ok=True)
    tmp = cache.with_suffix(".tmp.npz")
    np.savez(tmp, pixels=pixels)
    tmp.replace(cache)
    return Split(pixels, labels, rows)


def load_pixels(path: Path, cfg: PreprocessConfig) -> np.ndarray:
    """One file → uint8 ``[S, S, 3]`` through the serving decoder."""
    return resize_image(decode_image(Path(path).read_bytes(), max_pixels=MAX_PIXELS), cfg)


def augment(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Label-preserving for the emblem task: flips and 90° turns (an X stays an X)."""
    out = pixels.copy()
    flip = rng.random(len(out)) < 0.5
    out[flip] = out[flip, :, ::-1]
    turns = rng.integers(0, 4, len(out))
    for k in (1, 2, 3):
        sel = turns == k
        out[sel] = np.rot90(out[sel], k, axes=(1, 2))
    return out
