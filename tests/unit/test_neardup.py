"""The near-duplicate index (multi-index hashing) against brute force: exactly the stored hashes
within the distance, whatever the hashes, the query and the distance."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Column, MetaData, Table, create_engine, insert, select
from sqlalchemy.orm import Session

from cascade.context import Context
from cascade.db.schema import Base, Image
from cascade.db.session import make_engine, upgrade
from cascade.neardup import MAX_DISTANCE, NearDuplicateIndex, neighbours
from cascade.phash import bands_of, distance, to_signed64

U64 = st.integers(min_value=0, max_value=(1 << 64) - 1)


def _flip(value: int, bits: list[int]) -> int:
    for bit in bits:
        value ^= 1 << bit
    return value


@st.composite
def clustered_hashes(draw: st.DrawFn) -> list[int]:
    """Hashes in tight clusters (so that near pairs exist at every distance) plus strays."""
    centres = draw(st.lists(U64, min_size=1, max_size=6))
    out = list(centres)
    for centre in centres:
        for _ in range(draw(st.integers(0, 12))):
            flips = draw(st.lists(st.integers(0, 63), max_size=MAX_DISTANCE + 3))
            out.append(_flip(centre, flips))
    return out


def _rows(hashes: list[int]) -> list[dict[str, object]]:
    return [
        {"sha256": hashlib.sha256(f"{i}:{h}".encode()).hexdigest(), "phash": to_signed64(h),
         "size_bytes": 1, "width": 1, "height": 1, "format": "PNG", "blob_key": "k"}
        for i, h in enumerate(hashes)
    ]  # fmt: skip


@pytest.fixture(scope="module")
def memory_session() -> Iterator[Session]:
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine, tables=[Image.__table__])  # type: ignore[list-item]
    with Session(engine) as session:
        yield session
    engine.dispose()


@settings(max_examples=150, deadline=None)
@given(hashes=clustered_hashes(), data=st.data(), d=st.integers(0, MAX_DISTANCE))
def test_find_is_brute_force(
    memory_session: Session, hashes: list[int], data: st.DataObject, d: int
) -> None:
    session = memory_session
    session.execute(Image.__table__.delete())
    rows = _rows(hashes)
    session.execute(insert(Image), rows)  # the band columns come from the schema's defaults
    near = st.sampled_from(hashes).flatmap(
        lambda h: st.lists(st.integers(0, 63), max_size=d + 2).map(lambda f: _flip(h, f))
    )
    query = data.draw(st.one_of(near, U64), label="query")
    found = NearDuplicateIndex(session).find(to_signed64(query), d)
    expected = {r["sha256"] for r in rows if distance(int(r["phash"]), query) <= d}  # type: ignore[call-overload]
    assert found.complete
    assert {m.sha256 for m in found.matches} == expected
    assert [m.distance for m in found.matches] == sorted(m.distance for m in found.matches)
    assert all(m.distance == distance(m.phash, query) for m in found.matches)
    session.rollback()


@given(value=st.integers(0, (1 << 16) - 1), radius=st.integers(0, 3))
def test_neighbours_are_exactly_the_values_within_the_radius(value: int, radius: int) -> None:
    found = neighbours(value, radius)
    assert len(found) == len(set(found))
    assert all((v ^ value).bit_count() <= radius for v in found)
    assert len(found) == sum(math.comb(16, r) for r in range(radius + 1))


@given(U64)
def test_bands_are_the_same_bits_signed_or_not(value: int) -> None:
    bands = bands_of(value)
    assert bands == bands_of(to_signed64(value))
    assert sum(b << (16 * (3 - i)) for i, b in enumerate(bands)) == value


def test_a_crowded_bucket_gives_up_instead_of_reading_it_all(memory_session: Session) -> None:
    session = memory_session
    session.execute(Image.__table__.delete())
    session.execute(insert(Image), _rows([i for i in range(50)]))  # all share bands 0..2
    lookup = NearDuplicateIndex(session, max_candidates=10).find(0, 0)
    assert not lookup.complete and lookup.matches == []
    assert NearDuplicateIndex(session, max_candidates=100).find(0, 0).matches[0].phash == 0
    session.rollback()


def test_distance_beyond_what_the_index_answers_is_refused(memory_session: Session) -> None:
    with pytest.raises(ValueError, match=r"0\.\.15"):
        NearDuplicateIndex(memory_session).find(0, MAX_DISTANCE + 1)


def test_on_the_migrated_database(context: Context) -> None:
    """The real schema (SQLite file or PostgreSQL): bands filled on insert, look-up exact."""
    hashes = [0, 1, 3, (1 << 63) | 7, (1 << 64) - 1, 0xFFFF_0000_FFFF_0000]
    with context.sessions() as session:
        session.add_all(Image(**r) for r in _rows(hashes))  # type: ignore[arg-type]
        session.commit()
        stored = session.execute(
            select(Image.phash, Image.phash_b0, Image.phash_b1, Image.phash_b2, Image.phash_b3)
        ).all()
        assert all(tuple(r[1:]) == bands_of(r[0]) for r in stored)
        found = NearDuplicateIndex(session).find(to_signed64((1 << 63) | 5), 2)
        assert [(m.phash, m.distance) for m in found.matches] == [
            (to_signed64((1 << 63) | 7), 1),
            (1, 2),
        ]
        found = NearDuplicateIndex(session).find(2, 2)
        assert sorted(m.phash for m in found.matches) == [0, 1, 3]


def test_migration_fills_the_bands_of_existing_rows(tmp_path: Path) -> None:
    """Rows stored before the bands existed get them from their hash, in SQL, signed or not."""
    from tests.conftest import _drop_database, _fresh_database_url

    url, pg_name = _fresh_database_url(tmp_path)
    try:
        upgrade(url, "0002_rollups")
        hashes = [0, 1, 0x8000_0000_0000_0001, (1 << 64) - 1, 0x0123_4567_89AB_CDEF]
        engine = make_engine(url)
        with engine.begin() as conn:
            conn.execute(insert(_legacy_images()), _rows(hashes))
        upgrade(url)
        with engine.connect() as conn:
            stored = conn.execute(
                select(Image.phash, Image.phash_b0, Image.phash_b1, Image.phash_b2, Image.phash_b3)
            ).all()
        engine.dispose()
        assert sorted(r[0] for r in stored) == sorted(to_signed64(h) for h in hashes)
        assert all(tuple(r[1:]) == bands_of(r[0]) for r in stored)
    finally:
        if pg_name:
            _drop_database(pg_name)


def _legacy_images() -> Table:
    """``images`` as revision 0002 had it (no band columns)."""
    columns = [c for c in Image.__table__.c if not c.name.startswith("phash_b")]
    return Table(
        "images",
        MetaData(),
        *(Column(c.name, c.type, default=c.default) for c in columns),  # type: ignore[arg-type]
    )
