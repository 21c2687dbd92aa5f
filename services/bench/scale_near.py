"""The near-duplicate lookup of `cascade bench scale`, over the generated images' hashes.

Each lookup is what intake asks for a new upload: an image whose perceptual hash is a stored
image's hash with a few bits flipped (so a near duplicate exists, deep in the history), whose own
bytes are new (so the exact-hash answer is empty and the near-duplicate path runs).
"""

from __future__ import annotations

import random
import statistics
import time
from typing import Any

from sqlalchemy import func, select

from cascade.context import Context
from cascade.db.schema import Image
from cascade.phash import to_signed64
from services.bench.scale_load import sha

METHOD = "cascade.intake._cached_decision (recent-decisions scan)"


def _near(phash: int, distance: int, rng: random.Random) -> int:
    value = phash & ((1 << 64) - 1)
    for bit in rng.sample(range(64), distance):
        value ^= 1 << bit
    return to_signed64(value)


def lookups(context: Context, *, runs: int, distance: int, seed: int = 0) -> dict[str, Any]:
    """``runs`` timed lookups (the first on a cold connection); what was found each time."""
    from cascade.intake import _cached_decision

    rng = random.Random(seed)
    times, found = [], []
    with context.sessions() as session:
        total = int(session.scalar(select(func.count()).select_from(Image)) or 0)
        for run in range(runs):
            stored = session.get(Image, sha(rng.randrange(total)))
            assert stored is not None, "the generated images are numbered 0..n-1"
            probe = Image(sha256=f"{run:064x}"[::-1], phash=_near(stored.phash, distance, rng))
            t0 = time.perf_counter()
            decision = _cached_decision(session, probe, distance)
            times.append((time.perf_counter() - t0) * 1000)
            found.append(decision is not None)
    return {"ms": times, "median_ms": statistics.median(times), "found": found,
            "method": METHOD, "images": total, "distance": distance}  # fmt: skip
