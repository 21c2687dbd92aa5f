"""Images from outside a training run (a folder, or stored traffic), with labels where known.

Import calibration and distillation both read "some images, some of them labelled": from a data
set folder (``manifest.jsonl`` as ``models.synthetic`` writes it, or an ImageFolder whose
``allow/`` and ``block/`` subfolders are the labels), from any folder of images (unlabelled), or
from the blob store of past traffic (the CLI builds those ``Sample`` s from the database, since
this package imports nothing of ``cascade``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from models.preprocess import PreprocessConfig, decode_image, resize_image

LABELS = {"allow": 0, "block": 1}
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff"})
MAX_PIXELS = 40_000_000


@dataclass(frozen=True)
class Sample:
    """One image: a name for reports, how to read its bytes, and its label (0/1) if known."""

    name: str
    read: Callable[[], bytes]
    label: int | None = None


def folder_samples(root: Path | str, *, split: str | None = None) -> list[Sample]:
    """Every image under ``root``, labelled from ``manifest.jsonl`` when present (``split``
    filters its rows), else by an ``allow``/``block`` parent folder, else unlabelled."""
    root = Path(root)
    manifest = root / "manifest.jsonl"
    if manifest.is_file():
        rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
        return [
            Sample(
                r["file"], partial((root / r["file"]).read_bytes), LABELS.get(r.get("label", ""))
            )
            for r in rows
            if split is None or r.get("split") == split
        ]
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {root}")
    return [
        Sample(str(p.relative_to(root)), partial(p.read_bytes), LABELS.get(p.parent.name))
        for p in files
    ]


def labelled(samples: Iterable[Sample]) -> list[Sample]:
    return [s for s in samples if s.label is not None]


def decode_samples(
    samples: Sequence[Sample], configs: Sequence[PreprocessConfig]
) -> tuple[list[np.ndarray], list[int]]:
    """Decode each image once and resize it for every config: uint8 ``[N, S, S, 3]`` per config,
    and the indices of the samples that decoded (a bad file is skipped, never fatal)."""
    per_config: list[list[np.ndarray]] = [[] for _ in configs]
    kept: list[int] = []
    for i, sample in enumerate(samples):
        try:
            img = decode_image(sample.read(), max_pixels=MAX_PIXELS)
        except Exception:  # one unreadable file must not stop a run over thousands
            continue
        for out, cfg in zip(per_config, configs, strict=True):
            out.append(resize_image(img, cfg))
        kept.append(i)
    stacked = [
        np.stack(p) if p else np.zeros((0, c.size, c.size, 3), np.uint8)
        for p, c in zip(per_config, configs, strict=True)
    ]
    return stacked, kept
