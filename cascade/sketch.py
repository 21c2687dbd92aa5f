"""A mergeable latency sketch: counts in fixed logarithmic buckets.

Bucket ``k`` holds latencies in ``(FLOOR * GROWTH**(k-1), FLOOR * GROWTH**k]`` (bucket 0:
everything up to ``FLOOR``, 1 ms), with ``GROWTH = 2 ** (1 / PER_OCTAVE)``. Because the edges are
fixed, two sketches merge by adding counts bucket by bucket — which is what lets the roll-up
tables (``cascade.rollup``) keep one row per (time cell, bucket) and add to it from any number
of workers, and lets a query add hours, days and the raw tail together. A quantile read back is
the geometric middle of its bucket: at most ``GROWTH ** 0.5 - 1`` (4.4 %) from the true value.

Latencies enter as whole microseconds (both databases give exact integers, see
``cascade.rollup.epoch_us``), so a value on a bucket edge lands in the same bucket whichever
path computed it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import numpy.typing as npt

PER_OCTAVE = 8
GROWTH = 2.0 ** (1.0 / PER_OCTAVE)
FLOOR_US = 1_000  # 1 ms: anything faster is "instant" for this dashboard
MAX_BUCKET = 255  # 1 ms * 2**(255/8) ≈ 40 days; slower decisions share the last bucket
RELATIVE_ERROR = GROWTH**0.5 - 1.0


def bucket_of(latency_us: int) -> int:
    """The bucket of one latency in microseconds (``buckets_of``'s arithmetic, so a single
    value and a bulk load never disagree by a rounding)."""
    return int(buckets_of(np.asarray([latency_us], dtype=np.int64))[0])


def buckets_of(latency_us: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """``bucket_of`` over an array (bulk loads): the same buckets, value for value."""
    out = np.zeros(latency_us.shape, dtype=np.int64)
    above = latency_us > FLOOR_US
    ratio = latency_us[above].astype(np.float64) / FLOOR_US
    out[above] = np.clip(np.ceil(np.log2(ratio) * PER_OCTAVE), 1, MAX_BUCKET).astype(np.int64)
    return out


def representative_s(bucket: int) -> float:
    """The value a bucket stands for, in seconds: its geometric middle (bucket 0: the floor)."""
    if bucket <= 0:
        return FLOOR_US / 1e6
    return FLOOR_US / 1e6 * GROWTH ** (bucket - 0.5)


def merge(sketches: Iterable[Mapping[int, int]]) -> dict[int, int]:
    """Bucket-wise sum of several sketches (empty buckets dropped)."""
    out: dict[int, int] = {}
    for sketch in sketches:
        for bucket, n in sketch.items():
            out[bucket] = out.get(bucket, 0) + n
    return {b: n for b, n in out.items() if n}


def quantile(sketch: Mapping[int, int], q: float) -> float | None:
    """The q-quantile (0..1) in seconds: the bucket holding rank ``q·(n-1)`` (None if empty)."""
    total = sum(n for n in sketch.values() if n > 0)
    if total == 0:
        return None
    rank = q * (total - 1)
    seen = 0
    for bucket in sorted(b for b, n in sketch.items() if n > 0):
        seen += sketch[bucket]
        if seen > rank:
            return representative_s(bucket)
    return representative_s(max(sketch))


def count(sketch: Mapping[int, int]) -> int:
    return sum(sketch.values())
