"""Perceptual hash (dHash, 64 bits) for the near-duplicate decision cache."""

from __future__ import annotations

import numpy as np
from PIL import Image


def dhash(img: Image.Image) -> int:
    """64-bit difference hash: robust to re-encoding and resizing, cheap to compare.

    Intake computes it from the derivative (``cascade.derivative``), the pixels it decoded
    anyway: resizing first changes a few bits at most, well inside any useful distance."""
    small = img.convert("L").resize((9, 8), Image.Resampling.BILINEAR)
    px = np.asarray(small, dtype=np.int16)
    bits = np.packbits(px[:, 1:] > px[:, :-1])  # 8 bytes, most significant bit first
    return to_signed64(int.from_bytes(bits.tobytes(), "big"))


def to_signed64(value: int) -> int:
    """Store an unsigned 64-bit hash in a signed BIGINT column."""
    return value - (1 << 64) if value >= 1 << 63 else value


def distance(a: int, b: int) -> int:
    """Hamming distance between two hashes as stored (signed or not)."""
    return ((a ^ b) & ((1 << 64) - 1)).bit_count()


BANDS = 4  # the hash cut into four bands of 16 bits for the near-duplicate index
BAND_BITS = 64 // BANDS
BAND_MASK = (1 << BAND_BITS) - 1


def bands_of(value: int) -> tuple[int, ...]:
    """The hash's ``BANDS`` bands, most significant first, each an unsigned ``BAND_BITS``-bit
    integer (the same bits whether ``value`` is stored signed or not)."""
    return tuple((value >> (BAND_BITS * (BANDS - 1 - i))) & BAND_MASK for i in range(BANDS))
