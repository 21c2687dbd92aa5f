"""Near-duplicate look-up by multi-index hashing (MIH) over the 64-bit perceptual hash.

The hash (``cascade.phash.dhash``) is cut into ``BANDS`` = 4 bands of 16 bits, each kept in its
own indexed column of ``images`` (``phash_b0`` … ``phash_b3``, filled from ``phash`` on insert).
Two hashes within Hamming distance ``d`` differ in at most ``d`` bits, spread over 4 bands, so
at least one band differs in at most ``d // 4`` bits (pigeonhole). The look-up therefore lists,
for each band, every 16-bit value within ``r = d // 4`` bits of the query's band (1, 17, 137 or
697 values for r = 0..3), reads the rows whose band holds one of them (index look-ups only),
and keeps those truly within ``d``. It is exact: no image within ``d`` is missed, none farther
is returned. For ``d <= 3`` (r = 0) candidates share a band exactly.

Cost is the candidates read, not the table: with hashes spread evenly a band value is shared by
``N / 65,536`` rows, so at 10 million images a look-up reads about 4 x 150 = 600 rows for
``d <= 3`` and 68 x 150 = 10,000 for ``d <= 7``. Perceptual hashes are not spread evenly (flat
images share a few values), so ``max_candidates`` bounds the rows one look-up may read; past it
the look-up gives up (``Lookup.complete`` is False) rather than read a crowded bucket on every
upload: the image then runs the cascade, which is always a correct answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations

from sqlalchemy import select, union_all
from sqlalchemy.orm import Session

from cascade.db.schema import Image
from cascade.phash import BAND_BITS, BANDS, bands_of, distance

MAX_DISTANCE = 4 * BANDS - 1  # radius 3 per band: 697 values; beyond, enumerating costs more
DEFAULT_MAX_CANDIDATES = 20_000


def band_columns() -> list[object]:
    """The indexed band columns of ``images``, band 0 (most significant) first."""
    return [Image.phash_b0, Image.phash_b1, Image.phash_b2, Image.phash_b3]


def neighbours(value: int, radius: int, bits: int = BAND_BITS) -> list[int]:
    """Every ``bits``-bit value within Hamming distance ``radius`` of ``value`` (itself first)."""
    found = [value]
    for r in range(1, radius + 1):
        for flips in combinations(range(bits), r):
            mask = 0
            for bit in flips:
                mask |= 1 << bit
            found.append(value ^ mask)
    return found


@dataclass(frozen=True)
class Match:
    sha256: str
    phash: int
    distance: int


@dataclass
class Lookup:
    """What one look-up found: the matches (nearest first), how many rows it read, and whether
    it is the whole answer (False: the candidates were over ``max_candidates``)."""

    matches: list[Match] = field(default_factory=list)
    candidates: int = 0
    complete: bool = True


class NearDuplicateIndex:
    """``find(phash, d)``: the stored images whose hash is within Hamming distance ``d``."""

    def __init__(self, session: Session, *, max_candidates: int = DEFAULT_MAX_CANDIDATES) -> None:
        if max_candidates < 1:
            raise ValueError("max_candidates must be at least 1")
        self.session = session
        self.max_candidates = max_candidates

    def find(self, phash: int, max_distance: int) -> Lookup:
        if not 0 <= max_distance <= MAX_DISTANCE:
            raise ValueError(
                f"near-duplicate distance must be 0..{MAX_DISTANCE} bits, got {max_distance}; "
                "farther than that a dHash no longer means the same picture"
            )
        radius = max_distance // BANDS
        # One branch per band, each read from that band's index alone (it holds phash and
        # sha256): an OR of the bands would fetch every candidate's table row instead.
        branches = [
            select(Image.sha256, Image.phash).where(column.in_(neighbours(band, radius)))  # type: ignore[attr-defined]
            for column, band in zip(band_columns(), bands_of(phash), strict=True)
        ]
        # An image sharing several bands comes once per band: 4 x (max + 1) rows always hold
        # more than ``max_candidates`` distinct images when the limit is reached.
        limit = BANDS * (self.max_candidates + 1)
        found = self.session.execute(union_all(*branches).limit(limit)).all()
        rows = list(dict.fromkeys((sha, value) for sha, value in found))
        if len(rows) > self.max_candidates:
            return Lookup(candidates=len(rows), complete=False)
        matches = [
            Match(sha, value, d)
            for sha, value in rows
            if (d := distance(value, phash)) <= max_distance
        ]
        matches.sort(key=lambda m: (m.distance, m.sha256))
        return Lookup(matches, candidates=len(rows))
