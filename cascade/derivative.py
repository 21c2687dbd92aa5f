"""The normalised derivative: an upload decoded once, at intake, into the pixels the stages read.

Why: decoding is the largest cost on a CPU (a PNG a few hundred pixels a side takes longer to
decode than the screener takes to score it). The API decodes each new image once anyway, to
validate it; it keeps what each stage's model needs from those pixels: the stage's own resize
(``models.preprocess.resize_image``, the cacheable half of ``preprocess``), as 8-bit RGB at the
stage's input size. All stages' arrays go into one blob next to the original
(``BlobStore.derivative_key_for``), uncompressed, one array per stage geometry (``geometry_tag``):
a line naming the format, a JSON line listing the arrays (tag, height, width), then their raw
bytes. Lossless, ~60 KB at 64 + 128 px (about the size of an upload; at 224 + 384 px, ~600 KB:
the price of never decoding twice). Writing and reading it is a copy (~0.01 ms); the ``.npz``
it replaced cost ~0.2 ms to write at intake and as much to read in each stage (zip headers in
Python). Derivatives stored as ``.npz`` are still read.

A stage worker reads its array and only normalises it: the same numbers ``preprocess`` would
compute from the decoded image, exactly. The original stays for the review UI. An array that is
missing (an image stored before derivatives, or a model with another geometry installed since)
or damaged is not an error: the worker decodes the original instead, as it did before.

The one decode may be a JPEG draft (DCT scaling, several times cheaper for large photographs),
kept at twice the largest input side a stage needs, Pillow's own quality margin for
``thumbnail`` (``reducing_gap=2``): measured on the synthetic data, the resized pixels then
differ from a full decode's by 0.05/255 on average at 128 px. A stage that brings its own
reference pipeline (an imported model with ``resize_to`` or ``jpeg_quality``, scored to match
its reference within 1e-4) turns the draft off: the decode is then the full one.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from cascade.blobs import BlobStore
from models.preprocess import (
    PreprocessConfig,
    decode_image,
    normalize,
    preprocess,
    resize_image,
)

DRAFT_GAP = 2  # decode a JPEG at no less than this many times the largest input side


MAGIC = b"cascade-derivative 1\n"  # then a JSON line [[tag, height, width], ...], then pixels


@lru_cache(maxsize=64)
def geometry_tag(cfg: PreprocessConfig) -> str:
    """Names the resize a stage does (not its normalisation): its array in the derivative."""
    spec = [cfg.size, cfg.resize_to, cfg.resize, cfg.interpolation, cfg.jpeg_quality]
    return "g" + hashlib.sha1(json.dumps(spec).encode()).hexdigest()[:12]


@lru_cache(maxsize=8)
def stage_configs(model_dir: Path) -> tuple[PreprocessConfig, ...]:
    """The preprocessing of every stage under ``model_dir`` (``meta.json`` only, no engine is
    loaded), read once per process; empty when there are none (then no derivative is made)."""
    found = []
    for meta in sorted(Path(model_dir).glob("stage*/meta.json")):
        try:
            found.append(PreprocessConfig.from_dict(json.loads(meta.read_text())["preprocess"]))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not a stage directory we can read: its worker will say so
    return tuple(found)


def draft_size(cfgs: Sequence[PreprocessConfig]) -> int:
    """The smallest side a JPEG may be drafted to for ``cfgs`` (0: decode at full size)."""
    if not cfgs or any(c.resize_to or c.jpeg_quality for c in cfgs):
        return 0
    return DRAFT_GAP * max(c.size for c in cfgs)


def encode(img: PILImage.Image, cfgs: Sequence[PreprocessConfig]) -> bytes:
    """Each stage's resized pixels of ``img`` in one blob (uint8, size × size × 3 each)."""
    arrays = {geometry_tag(cfg): resize_image(img, cfg) for cfg in cfgs}
    header = [[tag, int(a.shape[0]), int(a.shape[1])] for tag, a in arrays.items()]
    parts = [MAGIC, json.dumps(header).encode(), b"\n"]
    parts += [np.ascontiguousarray(a, dtype=np.uint8).tobytes() for a in arrays.values()]
    return b"".join(parts)


def pixels(data: bytes, cfg: PreprocessConfig) -> np.ndarray | None:
    """The array ``encode`` stored for ``cfg``'s geometry; None when it has none. Raises
    ``ValueError`` (``EOFError`` when empty) on bytes that are not a derivative."""
    if not data.startswith(MAGIC):
        return _npz_pixels(data, cfg)  # stored before the raw format
    try:
        end = data.index(b"\n", len(MAGIC))
        header = json.loads(data[len(MAGIC) : end])
        offset, found = end + 1, None
        for tag, height, width in header:
            size = int(height) * int(width) * 3
            if tag == geometry_tag(cfg):
                found = (offset, int(height), int(width))
            offset += size
    except (ValueError, TypeError) as exc:  # a damaged header
        raise ValueError(f"not a derivative: {exc}") from exc
    if offset != len(data):
        raise ValueError(f"not a derivative: {len(data)} bytes where the header says {offset}")
    if found is None:
        return None
    start, height, width = found
    if (height, width) != (cfg.size, cfg.size):
        raise ValueError(f"not a derivative for this stage: {height}x{width}")
    return np.frombuffer(data, np.uint8, height * width * 3, start).reshape(height, width, 3)


def _npz_pixels(data: bytes, cfg: PreprocessConfig) -> np.ndarray | None:
    """``pixels`` of a derivative written as ``.npz`` (the format before ``MAGIC``)."""
    if not data:
        raise EOFError("an empty derivative")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            tag = geometry_tag(cfg)
            arr = arrays[tag] if tag in arrays.files else None
    except Exception as exc:  # zipfile and numpy raise many types on damaged bytes
        raise ValueError(f"not a derivative: {exc}") from exc
    if arr is not None and (arr.dtype != np.uint8 or arr.shape != (cfg.size, cfg.size, 3)):
        raise ValueError(f"not a derivative for this stage: {arr.dtype} {arr.shape}")
    return arr


def stage_input(
    blobs: BlobStore, sha: str, blob_key: str, cfg: PreprocessConfig, *, max_pixels: int
) -> tuple[np.ndarray, bool]:
    """The stage's input tensor for image ``sha``, from its derivative; from the original only
    when the derivative is missing, damaged or made for another geometry. Returns (tensor,
    read the original)."""
    try:
        arr = pixels(blobs.get(BlobStore.derivative_key_for(sha)), cfg)
        if arr is not None:
            return normalize(arr, cfg), False
    except (FileNotFoundError, ValueError, EOFError):
        pass  # stored before derivatives existed, or damaged: the original is still there
    original = decode_image(blobs.get(blob_key), max_pixels=max_pixels)
    return preprocess(original, cfg), True
