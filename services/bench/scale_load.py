"""Bulk loading of generated traffic (``services.bench.scale_data``): COPY on PostgreSQL,
``executemany`` on one raw SQLite connection, secondary indexes dropped during a first load and
built once at the end (a sort beats ten million index insertions).

The roll-ups are written from the same arrays with the product's own arithmetic
(``cascade.rollup.GRAINS``, ``cascade.sketch.buckets_of``, microsecond timestamps), and every
submission is marked as rolled up; a test checks that this equals what ``cascade.rollup``
computes from the loaded rows. Costs are rolled up by ``cascade.rollup.rebuild_costs``.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from sqlalchemy.schema import CreateIndex, DropIndex

from cascade import backlog, rollup, sketch
from cascade.db.schema import Base, CostLedger, Image, Label, ReviewItem, Submission
from services.bench.scale_data import DECIDERS, Generated, ledger_minutes

CHUNK = 100_000
BULK_TABLES = (Submission, Image, ReviewItem, Label)
MODERATORS = 20  # labels of the labelled audits are spread over this many user ids (1..20)


def load(engine: Engine, gen: Generated, prices: dict[str, float], *, first: bool) -> None:
    """Write ``gen``: submissions, images, review items and labels of its audits, ledger minutes,
    roll-ups. ``first``: the database is empty (indexes are dropped and rebuilt around it)."""
    dialect = engine.dialect.name
    tables = [Base.metadata.tables[t.__tablename__] for t in BULK_TABLES]
    indexes = [i for t in tables for i in t.indexes] if first else []
    engine.dispose()  # the bulk connection below must be the only one (SQLite's journal mode)
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        for statement in _bulk_settings(dialect):
            cur.execute(statement)
        for index in indexes:
            cur.execute(str(DropIndex(index).compile(dialect=engine.dialect)))
        writer = _writer(raw, dialect)
        for table, rows in (("images", _images), ("submissions", _submissions),
                            ("review_items", _review_items), ("labels", _labels)):  # fmt: skip
            writer(table, rows(gen, dialect))
            raw.commit()  # one table a transaction: a bounded journal
        for index in indexes:
            cur.execute(str(CreateIndex(index).compile(dialect=engine.dialect)))
            raw.commit()
        cur.close()
    finally:
        raw.close()
    engine.dispose()  # back to the engine's own settings (WAL on SQLite) on the next connect
    with Session(engine) as session:
        _ledger(session, gen, prices)
        _decision_rollups(session, gen)
        backlog.compact(session)  # the review items' trigger log, folded as beat would
        session.commit()


def _bulk_settings(dialect: str) -> list[str]:
    """Settings of the one bulk connection: on SQLite a rollback journal instead of the WAL
    (ten million rows would otherwise sit in the WAL until a checkpoint copies them again),
    no fsync, a large page cache for the index builds; on PostgreSQL memory for index builds
    and no waiting for the WAL flush at each commit."""
    if dialect == "postgresql":
        return ["SET maintenance_work_mem = '1GB'", "SET synchronous_commit = off"]
    return ["PRAGMA journal_mode=DELETE", "PRAGMA synchronous=OFF", "PRAGMA cache_size=-1000000"]


def _writer(raw: Any, dialect: str) -> Any:
    def sqlite_write(table: str, chunks: Iterator[dict[str, list[Any]]]) -> None:
        cur = raw.cursor()
        for cols in chunks:
            names = list(cols)
            sql = f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
            cur.executemany(sql, zip(*cols.values(), strict=True))
        cur.close()

    def postgres_write(table: str, chunks: Iterator[dict[str, list[Any]]]) -> None:
        cur = raw.cursor()
        for cols in chunks:
            buf = io.StringIO()
            for row in zip(*cols.values(), strict=True):
                buf.write("\t".join("\\N" if v is None else str(v) for v in row))
                buf.write("\n")
            with cur.copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN") as copy:
                copy.write(buf.getvalue())
        cur.close()

    return postgres_write if dialect == "postgresql" else sqlite_write


def timestamps(us: np.ndarray, dialect: str) -> list[str]:
    """Epoch microseconds as the text each database stores (SQLAlchemy's format on SQLite)."""
    text = np.datetime_as_string(us.astype("datetime64[us]"), unit="us")
    text = np.char.replace(text, "T", " ")
    if dialect == "postgresql":
        text = np.char.add(text, "+00")
    return list(text.tolist())


def _flag(values: np.ndarray, dialect: str) -> list[Any]:
    if dialect == "postgresql":
        return ["t" if v else "f" for v in values.tolist()]
    return [int(v) for v in values.tolist()]


def _chunks(n: int) -> Iterator[slice]:
    for lo in range(0, n, CHUNK):
        yield slice(lo, min(n, lo + CHUNK))


def sid(i: int) -> str:
    return f"00000000-0000-4000-8000-{i:012d}"


def sha(i: int) -> str:
    return f"{i:064x}"


def _bands(phash: np.ndarray) -> dict[str, list[int]]:
    """The near-duplicate index's band columns of ``images`` (``phash_b0``…, most significant
    first, unsigned), whatever their number: the schema says which there are."""
    names = sorted(c.name for c in Image.__table__.columns if c.name.startswith("phash_b"))
    bits = 64 // len(names) if names else 0
    mask = (1 << bits) - 1
    return {n: ((phash >> (bits * (len(names) - 1 - i))) & mask).tolist()
            for i, n in enumerate(names)}  # fmt: skip


def _images(gen: Generated, dialect: str) -> Iterator[dict[str, list[Any]]]:
    for s in _chunks(gen.n):
        ids = gen.ids[s].tolist()
        k = len(ids)
        yield {
            **_bands(gen.phash[s]),
            "sha256": [sha(i) for i in ids],
            "phash": gen.phash[s].tolist(),
            "size_bytes": [1000] * k,
            "width": [64] * k,
            "height": [64] * k,
            "format": ["jpeg"] * k,
            "blob_key": [f"bench/{i}" for i in ids],
            "created_at": timestamps(gen.created_us[s], dialect),
        }


def _submissions(gen: Generated, dialect: str) -> Iterator[dict[str, list[Any]]]:
    for s in _chunks(gen.n):
        ids = gen.ids[s].tolist()
        k = len(ids)
        decided = timestamps(gen.decided_us[s], dialect)
        deciders = gen.decider[s].tolist()
        outcome = ["block" if b else "allow" for b in gen.decision_block[s].tolist()]
        s2 = [None if np.isnan(v) else v for v in gen.s2[s].tolist()]
        yield {
            "id": [sid(i) for i in ids],
            "tenant_id": [1] * k,
            "image_sha256": [sha(i) for i in ids],
            "state": ["decided"] * k,
            "s1": gen.s1[s].tolist(),
            "s2": s2,
            "threshold_version": gen.version[s].tolist(),
            "route": outcome,
            "decision": outcome,
            "decided_by": deciders,
            "auto_decision": outcome,
            "audit": _flag(gen.audit[s], dialect),
            "audit_p": [0.02] * k,
            "attempts": [1] * k,
            "callback_attempts": [0] * k,
            "created_at": timestamps(gen.created_us[s], dialect),
            "decided_at": decided,
            "rolled_decided_at": decided,
            "rolled_decided_by": deciders,
        }


def _review_items(gen: Generated, dialect: str) -> Iterator[dict[str, list[Any]]]:
    """One audit item per audited submission: done with its true label (older), or waiting."""
    audits = np.flatnonzero(gen.audit)
    for s in _chunks(audits.size):
        rows = audits[s]
        done = gen.labelled[rows]
        k = rows.size
        done_at = timestamps(gen.decided_us[rows] + 600_000_000, dialect)
        yield {
            "id": (gen.ids[rows] + 1).tolist(),
            "submission_id": [sid(i) for i in gen.ids[rows].tolist()],
            "reason": ["audit"] * k,
            "state": ["done" if d else "pending" for d in done.tolist()],
            "priority": [1] * k,
            "labels_required": [1] * k,
            "final_label": [
                ("block" if h else "allow") if d else None
                for d, h in zip(done.tolist(), gen.harmful[rows].tolist(), strict=True)
            ],
            "created_at": timestamps(gen.decided_us[rows], dialect),
            "done_at": [t if d else None for t, d in zip(done_at, done.tolist(), strict=True)],
        }


def _labels(gen: Generated, dialect: str) -> Iterator[dict[str, list[Any]]]:
    rows_all = np.flatnonzero(gen.labelled)
    for s in _chunks(rows_all.size):
        rows = rows_all[s]
        ids = gen.ids[rows]
        yield {
            "id": (ids + 1).tolist(),
            "review_item_id": (ids + 1).tolist(),
            "submission_id": [sid(i) for i in ids.tolist()],
            "user_id": (1 + ids % MODERATORS).tolist(),
            "label": ["block" if h else "allow" for h in gen.harmful[rows].tolist()],
            "created_at": timestamps(gen.decided_us[rows] + 600_000_000, dialect),
        }


def _ledger(session: Session, gen: Generated, prices: dict[str, float]) -> None:
    rows = [{**r, "minute": datetime.fromtimestamp(int(str(r["minute_s"])), UTC)}
            for r in ledger_minutes(gen, prices)]  # fmt: skip
    for row in rows:
        del row["minute_s"]
    # Added to what a minute already holds (a top-up can share its first minute).
    for lo in range(0, len(rows), CHUNK):
        rollup.add_to_rows(session, CostLedger, keys=["minute", "bucket"],
                           added=["images", "device_seconds", "dollars"],
                           rows=rows[lo : lo + CHUNK])  # fmt: skip
    rollup.rebuild_costs(session)


def _decision_rollups(session: Session, gen: Generated) -> None:
    """Decision and sketch cells of every grain from the arrays, with ``cascade.rollup``'s
    grains and ``cascade.sketch``'s buckets."""
    names = DECIDERS.tolist()
    seconds = gen.decided_us // 1_000_000
    buckets = sketch.buckets_of(gen.decided_us - gen.created_us)
    decided: Counter[tuple[int, int, str, bool]] = Counter()
    latency: Counter[tuple[int, int, int]] = Counter()
    for grain in rollup.GRAINS:
        start = seconds - seconds % grain
        key = start * 8 + gen.decider_code.astype(np.int64) * 2 + gen.audit
        for c, n in zip(*np.unique(key, return_counts=True), strict=True):
            decided[(grain, int(c) // 8, names[(int(c) % 8) // 2], bool(c % 2))] += int(n)
        for c, n in zip(*np.unique(start * 256 + buckets, return_counts=True), strict=True):
            latency[(grain, int(c) // 256, int(c) % 256)] += int(n)
    rollup.add_cells(session, decided, latency)
