"""Perceptual hash (dHash, 64 bits) for the near-duplicate decision cache."""

from __future__ import annotations

import numpy as np
from PIL import Image


def dhash(img: Image.Image) -> int:
    """64-bit difference hash: robust to re-encoding and resizing, cheap to compare."""
    small = img.convert("L").resize((9, 8), Image.Resampling.BILINEAR)
    px = np.asarray(small, dtype=np.int16)
    bits = (px[:, 1:] > px[:, :-1]).flatten()
    value = 0
    for bit in bits:
        value = (value << 1) | int(bit)
    return to_signed64(value)


def to_signed64(value: int) -> int:
    """Store an unsigned 64-bit hash in a signed BIGINT column."""
    return value - (1 << 64) if value >= 1 << 63 else value


def distance(a: int, b: int) -> int:
    """Hamming distance between two hashes as stored (signed or not)."""
    return ((a ^ b) & ((1 << 64) - 1)).bit_count()
