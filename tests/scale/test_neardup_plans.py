"""The near-duplicate look-up at depth reads the band indexes only: each band's branch is an
index-only range of ``ix_images_phash_b<i>`` (which holds the hash and the key), never the
table — at ten million images the table reads were what made a look-up slow."""

from __future__ import annotations

from sqlalchemy import select, text

from cascade.context import Context
from cascade.db.schema import Image
from cascade.neardup import NearDuplicateIndex
from tests.scale.plans import captured, full_scans, uses
from tests.scale.test_queue_plans import deep_queue

__all__ = ["deep_queue"]


def test_lookup_reads_the_band_indexes_only(deep_queue: Context) -> None:
    with deep_queue.sessions() as session:
        if deep_queue.engine.dialect.name == "postgresql":
            session.execute(text("SET enable_seqscan = off"))
        stored = session.scalars(select(Image.phash).limit(1)).one()
        with captured(deep_queue.engine) as plans:
            found = NearDuplicateIndex(session).find(stored ^ 0b101, 3)
    assert [m.phash for m in found.matches] == [stored] and found.complete
    assert full_scans(plans, ("images",)) == []
    assert all(uses(plans, f"ix_images_phash_b{i}") for i in range(4))
