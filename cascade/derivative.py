"""The normalised derivative: an upload decoded once, at intake, into the pixels the stages read.

Why: decoding is the largest cost on a CPU (a PNG of a few hundred pixels a side takes longer to
decode than the screener takes to score it). The API decodes each new image once anyway, to
validate it; it keeps the result, shrunk so that its shorter side is the largest input side a
stage needs (``side``; never enlarged), as 8-bit RGB in NumPy's ``.npy`` format next to the
original (``BlobStore.derivative_key_for``). Lossless and the cheapest format to read back
(~0.1 ms at 128 px, against ~1.5 ms to write a PNG); the price is size, ~3 bytes a pixel
(~50 KB at 128 px), about the size of the original upload.

A stage worker reads the derivative and runs its model's own ``preprocess`` on it (resize to
its input size, crop where its geometry says so), never the original. The original stays for
the review UI. A derivative that is missing (an image stored before derivatives existed) or too
small for the stage (a model with a larger input was installed since) is not an error: the
worker decodes the original instead, as it did before.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from cascade.blobs import BlobStore
from models.preprocess import PreprocessConfig, decode_image, preprocess

DEFAULT_SIDE = 256  # when neither the settings nor the model directory say
_RESAMPLE = PILImage.Resampling.BILINEAR  # closest to one bilinear resize of the original


def stage_side(cfg: PreprocessConfig) -> int:
    """The shorter side an image needs for ``cfg`` to see it at full detail."""
    return max(cfg.size, cfg.resize_to)


@lru_cache(maxsize=8)
def model_side(model_dir: Path) -> int:
    """The largest ``stage_side`` among the stages under ``model_dir`` (``meta.json`` only, no
    engine is loaded); ``DEFAULT_SIDE`` when there are none. Read once per process."""
    sides = []
    for meta in sorted(Path(model_dir).glob("stage*/meta.json")):
        try:
            pre = json.loads(meta.read_text())["preprocess"]
            sides.append(stage_side(PreprocessConfig.from_dict(pre)))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not a stage directory we can read: the workers will say so
    return max(sides, default=DEFAULT_SIDE)


def shrink(img: PILImage.Image, side: int) -> PILImage.Image:
    """``img`` with its shorter side brought down to ``side`` (aspect kept; never enlarged)."""
    short = min(img.size)
    if short <= side:
        return img
    size = (max(1, img.width * side // short), max(1, img.height * side // short))
    return img.resize(size, _RESAMPLE)


def encode(img: PILImage.Image) -> bytes:
    """RGB pixels as ``.npy`` (uint8, height × width × 3)."""
    buf = io.BytesIO()
    np.save(buf, np.asarray(img.convert("RGB"), dtype=np.uint8), allow_pickle=False)
    return buf.getvalue()


def decode(data: bytes) -> PILImage.Image:
    """The RGB image stored by ``encode``; raises ``ValueError`` (``EOFError`` when empty) on
    anything else."""
    arr = np.load(io.BytesIO(data), allow_pickle=False)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3 or 0 in arr.shape:
        raise ValueError(f"not a derivative: {arr.dtype} {arr.shape}")
    return PILImage.fromarray(arr, mode="RGB")


def covers(derivative: PILImage.Image, need: int, *, original: tuple[int, int]) -> bool:
    """Whether ``derivative`` has the detail a stage needing side ``need`` wants: its shorter
    side reaches ``need``, or it was never shrunk (the original itself is that small)."""
    return min(derivative.size) >= min(need, min(original))


@dataclass(frozen=True)
class StoredImage:
    """What a stage worker needs of an image row (plain values: safe to hand to a thread)."""

    sha256: str
    blob_key: str
    width: int
    height: int


def stage_input(
    blobs: BlobStore, image: StoredImage, cfg: PreprocessConfig, *, max_pixels: int
) -> tuple[np.ndarray, bool]:
    """The stage's input tensor for ``image``, from its derivative; from the original only when
    the derivative is missing, unreadable or too small. Returns (tensor, read the original)."""
    need = stage_side(cfg)
    try:
        img = decode(blobs.get(BlobStore.derivative_key_for(image.sha256)))
        if covers(img, need, original=(image.width, image.height)):
            return preprocess(img, cfg), False
    except (FileNotFoundError, ValueError, EOFError):
        pass  # stored before derivatives existed, or damaged: the original is still there
    original = decode_image(blobs.get(image.blob_key), max_pixels=max_pixels, draft_to=need)
    return preprocess(original, cfg), True
