"""The near-duplicate lookup of `cascade bench scale`, over the generated images' hashes.

Each lookup is what intake asks for a new upload (``cascade.intake._cached_decision``): its
exact-bytes answer (empty: the bytes are new), then the near-duplicate index
(``cascade.neardup``, multi-index hashing over the hash's four 16-bit bands) and the decision
of what it found. The query hash is a stored image's hash with ``distance`` bits flipped, so a
near duplicate exists deep in the history. The index's own ``find`` is timed as well, at the
headline distance and at the farthest it supports.
"""

from __future__ import annotations

import random
import statistics
import time
from typing import Any

from sqlalchemy import func, select

from cascade.context import Context
from cascade.db.schema import Image
from cascade.neardup import MAX_DISTANCE, NearDuplicateIndex
from cascade.phash import to_signed64
from services.bench.scale_load import sha

METHOD = "cascade.intake._cached_decision: exact bytes, then cascade.neardup (multi-index hashing)"


def _near(phash: int, distance: int, rng: random.Random) -> int:
    value = phash & ((1 << 64) - 1)
    for bit in rng.sample(range(64), distance):
        value ^= 1 << bit
    return to_signed64(value)


def _queries(session: Any, runs: int, distance: int, rng: random.Random) -> list[Image]:
    total = int(session.scalar(select(func.count()).select_from(Image)) or 0)
    out = []
    for run in range(runs):
        stored = session.get(Image, sha(rng.randrange(total)))
        assert stored is not None, "the generated images are numbered 0..n-1"
        out.append(Image(sha256=f"{run:064x}"[::-1], phash=_near(stored.phash, distance, rng)))
    return out


def lookups(context: Context, *, runs: int, distance: int, seed: int = 0) -> dict[str, Any]:
    """``runs`` timed intake lookups (the first on a new connection), then the index alone."""
    from cascade.intake import _cached_decision

    rng = random.Random(seed)
    times, found = [], []
    with context.sessions() as session:
        total = int(session.scalar(select(func.count()).select_from(Image)) or 0)
        for query in _queries(session, runs, distance, rng):
            t0 = time.perf_counter()
            decision = _cached_decision(session, query, distance, known=True)
            times.append((time.perf_counter() - t0) * 1000)
            found.append(decision is not None)
        index = {}
        for d in sorted({distance, MAX_DISTANCE}):
            ms, candidates = [], []
            for query in _queries(session, runs, d, rng):
                t0 = time.perf_counter()
                result = NearDuplicateIndex(session).find(query.phash, d)
                ms.append((time.perf_counter() - t0) * 1000)
                candidates.append(result.candidates)
            index[str(d)] = {"median_ms": statistics.median(ms), "ms": ms,
                             "candidates": candidates}  # fmt: skip
    return {"ms": times, "median_ms": statistics.median(times), "found": found,
            "method": METHOD, "images": total, "distance": distance, "find": index}  # fmt: skip
