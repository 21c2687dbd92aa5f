"""Reading the synthetic (or any ImageFolder + manifest) data set for training and evaluation.

Images go through exactly the serving path: ``decode_image`` (bytes → RGB) then
``resize_image``; only ``normalize`` is deferred to batch time so the cache holds compact uint8
arrays. ``preprocess`` is ``normalize(resize_image(...))``, hence training and serving agree.
Decoding runs once per file for every input size asked together (``cache_splits``), spread over
the CPU's cores, and is cached under ``<data_dir>/.cache``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.preprocess import PreprocessConfig, decode_image, normalize, resize_image
from models.registry import CLASS_NAMES
from models.synthetic import UNDECIDABLE

MAX_PIXELS = 40_000_000
UNBANDED = "all"  # the band of images whose manifest names none (external data sets)


@dataclass(frozen=True)
class Split:
    """One split in memory: uint8 pixels ``[N, S, S, 3]``, labels ``[N]`` and manifest rows."""

    pixels: np.ndarray
    labels: np.ndarray
    rows: list[dict[str, Any]]

    def __len__(self) -> int:
        return len(self.labels)

    def inputs(self, cfg: PreprocessConfig, rows: slice = slice(None)) -> np.ndarray:
        """Float32 model inputs ``[N, 3, S, S]`` (normalised, as the engines expect) of the
        images in ``rows`` (all by default; four times the pixels' memory, so score large
        splits a slice at a time)."""
        return normalize(self.pixels[rows], cfg)

    def targets(self, undecidable: Sequence[str] = UNDECIDABLE) -> np.ndarray:
        """P(block) each image is trained toward: its label, except in a band the model cannot
        decide (``undecidable``; by default ``models.synthetic.UNDECIDABLE``, the bands no model
        can), where it is that band's share of harmful images in this split. Hard labels there
        are coin flips given the image, and a model fitted to them learns noise: stage 1 of
        world 9 spread its scores on covered signs over 0.06-0.78 where the truth is one value
        for all, and a covered harmful sign scored 0.03 was allowed with the plainly benign
        images. Real data's counterpart is the share of moderators who voted "block" where they
        disagree."""
        targets = self.labels.astype(np.float32)
        bands = self.bands
        for band in undecidable:
            sel = bands == band
            if sel.any():
                targets[sel] = targets[sel].mean()
        return targets

    @property
    def bands(self) -> np.ndarray:
        """Each image's difficulty band (see ``models.synthetic``), ``"all"`` when unknown."""
        return np.asarray([str(r.get("band", UNBANDED)) for r in self.rows])


def read_manifest(data_dir: Path) -> list[dict[str, Any]]:
    path = Path(data_dir) / "manifest.jsonl"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found; generate a data set with `cascade data generate --out {data_dir}`."
        )
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _rows(data_dir: Path, split: str, limit: int | None) -> list[dict[str, Any]]:
    rows = [r for r in read_manifest(data_dir) if r.get("split") == split][:limit]
    if not rows:
        raise ValueError(f"split {split!r} of {data_dir} is empty")
    return rows


def _cache_path(data_dir: Path, split: str, cfg: PreprocessConfig, rows: list[dict[str, Any]]) -> Path:  # fmt: skip
    key = hashlib.sha256(
        json.dumps([cfg.size, cfg.interpolation, [r["file"] for r in rows]]).encode()
        + (data_dir / "manifest.jsonl").read_bytes()
    ).hexdigest()[:16]
    return data_dir / ".cache" / f"{split}-{cfg.size}-{key}.npz"


def load_split(
    data_dir: Path, split: str, cfg: PreprocessConfig, *, limit: int | None = None
) -> Split:
    """Decode and resize one split, cached under ``<data_dir>/.cache`` by content and config."""
    data_dir = Path(data_dir)
    rows = _rows(data_dir, split, limit)
    cache = _cache_path(data_dir, split, cfg, rows)
    if not cache.is_file():
        cache_splits(data_dir, [split], [cfg], limit=limit)
    labels = np.asarray([CLASS_NAMES.index(r["label"]) for r in rows], dtype=np.int64)
    return Split(np.load(cache)["pixels"], labels, rows)


def cache_splits(
    data_dir: Path, splits: Sequence[str], cfgs: Sequence[PreprocessConfig], *,
    limit: int | None = None, workers: int | None = None,
) -> None:  # fmt: skip
    """Fill the cache for every (split, input size) pair missing from it, decoding each file
    once for all sizes, on ``workers`` processes (default: every core)."""
    data_dir = Path(data_dir)
    for split in splits:
        rows = _rows(data_dir, split, limit)
        todo = [c for c in cfgs if not _cache_path(data_dir, split, c, rows).is_file()]
        if not todo:
            continue
        files = [str(data_dir / r["file"]) for r in rows]
        pixels = _decode_all(files, todo, workers)
        for cfg, arr in zip(todo, pixels, strict=True):
            cache = _cache_path(data_dir, split, cfg, rows)
            cache.parent.mkdir(exist_ok=True)
            tmp = cache.with_suffix(f".{os.getpid()}.tmp.npz")  # concurrent fillers: no clash
            np.savez(tmp, pixels=arr)
            tmp.replace(cache)


def _decode_all(
    files: list[str], cfgs: list[PreprocessConfig], workers: int | None
) -> list[np.ndarray]:
    workers = max(1, min(workers or os.cpu_count() or 1, -(-len(files) // 256)))
    if workers == 1:
        parts = [_decode_chunk(files, cfgs)]
    else:
        edges = np.linspace(0, len(files), 4 * workers + 1).astype(int)
        chunks = [files[a:b] for a, b in itertools.pairwise(edges)]
        with ProcessPoolExecutor(workers) as pool:
            parts = list(pool.map(_decode_chunk, chunks, [cfgs] * len(chunks)))
    return [np.concatenate([p[k] for p in parts]) for k in range(len(cfgs))]


def _decode_chunk(files: list[str], cfgs: list[PreprocessConfig]) -> list[np.ndarray]:
    out: list[list[np.ndarray]] = [[] for _ in cfgs]
    for f in files:
        img = decode_image(Path(f).read_bytes(), max_pixels=MAX_PIXELS)
        for k, cfg in enumerate(cfgs):
            out[k].append(resize_image(img, cfg))
    return [np.stack(o) if o else np.zeros((0, c.size, c.size, 3), np.uint8) for o, c in zip(out, cfgs, strict=True)]  # fmt: skip


def load_pixels(path: Path, cfg: PreprocessConfig) -> np.ndarray:
    """One file → uint8 ``[S, S, 3]`` through the serving decoder."""
    return resize_image(decode_image(Path(path).read_bytes(), max_pixels=MAX_PIXELS), cfg)


def augment(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Label-preserving for the emblem task: flips and 90° turns (an X stays an X, a + a +).
    Nothing that blurs or crops: the deciding sign may be a few pixels wide, near an edge."""
    out = pixels.copy()
    flip = rng.random(len(out)) < 0.5
    out[flip] = out[flip, :, ::-1]
    turns = rng.integers(0, 4, len(out))
    for k in (1, 2, 3):
        sel = turns == k
        out[sel] = np.rot90(out[sel], k, axes=(1, 2))
    return out
