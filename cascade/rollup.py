"""Roll-ups: decided images, latency sketches and costs per 5-minute, hourly and daily cell.

At ten million decisions a dashboard that counts rows is too slow; these tables hold the same
figures per time cell (``GRAINS``), so a 30-day view reads a few thousand rows.

**Decisions.** What a submission adds to the roll-ups depends only on its ``decided_at``,
``decided_by``, ``audit`` and ``created_at`` (its cell, decider, audit flag and latency). Its row
also records what the roll-ups count for it (``rolled_decided_at``, ``rolled_decided_by``).
``apply`` adds the difference between the two — the old contribution out, the new one in — and
sets the record, all in the caller's transaction. Hence:

- idempotent: applied again, a row whose record equals its decision adds nothing;
- redelivery: a batch run twice decides nothing new the second time, so adds nothing;
- a crash between writes: the counts and the records commit together or not at all;
- corrections (an audit label, an undo) move the count from the old cell to the new one;
- concurrent appliers: rows are locked before they are read (``FOR UPDATE`` on PostgreSQL, the
  one write lock on SQLite), so two appliers never add the same difference twice.

The stage workers call ``apply`` inside their batch transaction. Decisions made elsewhere (a
human label, a cache hit at intake) are rolled up by ``catch_up``, which beat runs every minute.
Until then they are *unrolled*: the partial index ``ix_submissions_unrolled`` holds exactly those
rows, and readers (``cascade.series``) correct for them, so the dashboard is exact at any moment.

**Costs.** ``add_cost`` adds to every grain's cell in the same transaction as the ledger minute
(``cascade.cost.add_to_ledger``), so a cell always equals the sum of its minutes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import numpy as np
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    bindparam,
    cast,
    delete,
    false,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from cascade import sketch
from cascade.db.schema import (
    CostLedger,
    CostRollup,
    DecisionRollup,
    LatencyRollup,
    Submission,
)

GRAINS = (300, 3600, 86400)  # 5 minutes (windows up to a day), hours, days
FINEST = GRAINS[0]
CHUNK = 500  # ids per IN (...) list


def epoch_us(column: Any, dialect: str) -> ColumnElement[int]:
    """A timestamp column as exact integer microseconds since the epoch, in SQL.

    Exact on both databases (PostgreSQL's ``extract`` is numeric; SQLite's text timestamps are
    split into whole seconds and the six fraction digits SQLAlchemy always writes), so a latency
    computed here lands in the same sketch bucket as one computed from the same row elsewhere.
    """
    if dialect == "postgresql":
        return cast(func.extract("epoch", column) * 1_000_000, BigInteger)
    # The whole seconds from the text without its fraction: SQLite rounds a time to the
    # millisecond first, so "…:59.9996" would otherwise count as the next second.
    seconds = cast(func.strftime("%s", func.substr(column, 1, 19)), Integer)
    return seconds * 1_000_000 + cast(func.substr(column, 21, 6), Integer)


def unrolled() -> ColumnElement[bool]:
    """Rows whose decision the roll-ups do not count as it is (``ix_submissions_unrolled``)."""
    return or_(
        Submission.decided_at.is_distinct_from(Submission.rolled_decided_at),
        Submission.decided_by.is_distinct_from(Submission.rolled_decided_by),
    )


def unrolled_rows(dialect: str) -> Any:
    """``SELECT`` of unrolled rows: id, the decision now and what is counted, in microseconds."""
    created = epoch_us(Submission.created_at, dialect)
    return select(
        Submission.id,
        Submission.audit,
        created.label("created_us"),
        epoch_us(Submission.decided_at, dialect).label("decided_us"),
        Submission.decided_by,
        epoch_us(Submission.rolled_decided_at, dialect).label("rolled_us"),
        Submission.rolled_decided_by,
    ).where(unrolled())


def contributions(
    rows: Sequence[Any],
) -> tuple[Counter[tuple[int, int, str, bool]], Counter[tuple[int, int, int]]]:
    """What unrolled rows change: decided counts per (grain, start, decider, audit) and sketch
    counts per (grain, start, bucket) — the decision as it is now in, the one counted out."""
    entries = [
        (int(at_us), int(at_us) - int(row.created_us), by or "", bool(row.audit), sign)
        for row in rows
        for at_us, by, sign in (
            (row.rolled_us, row.rolled_decided_by, -1),
            (row.decided_us, row.decided_by, 1),
        )
        if at_us is not None
    ]
    buckets = sketch.buckets_of(np.asarray([e[1] for e in entries], dtype=np.int64))
    decided: Counter[tuple[int, int, str, bool]] = Counter()
    latency: Counter[tuple[int, int, int]] = Counter()
    for (at_us, _, by, audit, sign), bucket in zip(entries, buckets.tolist(), strict=True):
        seconds = at_us // 1_000_000
        for grain in GRAINS:
            start = seconds - seconds % grain
            decided[(grain, start, by, audit)] += sign
            latency[(grain, start, bucket)] += sign
    return decided, latency


def apply(session: Session, ids: Sequence[str]) -> int:
    """Roll up the decisions of these submissions as they are now, in the caller's transaction
    (the stage workers' one call per batch). Returns how many rows changed the roll-ups."""
    session.flush()
    stmt = _unrolled_of_ids(session.get_bind().dialect.name)
    rows: list[Any] = []
    for lo in range(0, len(ids), CHUNK):
        rows += session.execute(stmt, {"ids": list(ids[lo : lo + CHUNK])}).all()
    return _apply_rows(session, rows)


@lru_cache(maxsize=4)
def _unrolled_of_ids(dialect: str) -> Any:
    """``unrolled_rows`` of the ids given as the parameter ``ids``, locked, built once per
    dialect: building it (three timestamp expressions) and its cache key was 7 % of a stage
    batch's CPU in a profile, every batch."""
    return (
        unrolled_rows(dialect)
        .where(Submission.id.in_(bindparam("ids", expanding=True)))
        .order_by(Submission.id)
        .with_for_update()
    )


def catch_up(session: Session, *, limit: int = 20_000) -> int:
    """Roll up at most ``limit`` unrolled decisions (beat's job, and after a bulk load or an
    upgrade); returns how many. Rows another transaction holds are left for the next run."""
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        # Take the one write lock before reading, so nothing changes between read and write.
        session.execute(update(DecisionRollup).where(false()).values(decided=0))
    stmt = unrolled_rows(dialect).limit(limit)
    if dialect == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    return _apply_rows(session, list(session.execute(stmt).all()))


def _apply_rows(session: Session, rows: list[Any]) -> int:
    if not rows:
        return 0
    add_cells(session, *contributions(rows))
    ids = [row.id for row in rows]
    for lo in range(0, len(ids), CHUNK):
        session.execute(_MARK_ROLLED, {"ids": ids[lo : lo + CHUNK]})
    return len(rows)


_MARK_ROLLED = (  # built once, like ``_unrolled_of_ids``
    update(Submission)
    .where(Submission.id.in_(bindparam("ids", expanding=True)))
    .values(rolled_decided_at=Submission.decided_at, rolled_decided_by=Submission.decided_by)
    .execution_options(synchronize_session=False)
)


def add_cells(
    session: Session,
    decided: Mapping[tuple[int, int, str, bool], int],
    latency: Mapping[tuple[int, int, int], int],
) -> None:
    """Add counts to decision cells (grain, start, decider, audit) and sketch cells (grain,
    start, bucket); zero changes are skipped."""
    rows = [{"grain_s": g, "start_s": s, "decider": d, "audit": a, "decided": n}
            for (g, s, d, a), n in decided.items() if n]  # fmt: skip
    add_to_rows(session, DecisionRollup, keys=["grain_s", "start_s", "decider", "audit"],
                added=["decided"], rows=rows)  # fmt: skip
    rows = [{"grain_s": g, "start_s": s, "bucket": b, "n": n}
            for (g, s, b), n in latency.items() if n]  # fmt: skip
    add_to_rows(session, LatencyRollup, keys=["grain_s", "start_s", "bucket"], added=["n"],
                rows=rows)  # fmt: skip


def add_to_rows(
    session: Session, table: Any, *, keys: list[str], added: list[str], rows: list[dict[str, Any]]
) -> None:
    """Insert ``rows`` or add their ``added`` columns to the rows with the same ``keys``
    (one upsert statement run for all rows, so concurrent writers add, never overwrite)."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    session.execute(_upsert_adding(dialect, table, tuple(keys), tuple(added)), rows)


@lru_cache(maxsize=32)
def _upsert_adding(dialect: str, table: Any, keys: tuple[str, ...], added: tuple[str, ...]) -> Any:
    """The upsert of ``add_to_rows``, built once per dialect and table (a stage batch runs
    three or four of them)."""
    upsert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = upsert(table)
    return stmt.on_conflict_do_update(
        index_elements=list(keys),
        set_={c: getattr(table, c) + getattr(stmt.excluded, c) for c in added},
    )


def add_cost(
    session: Session,
    *,
    bucket: str,
    at: datetime,
    images: int,
    device_seconds: float,
    dollars: float,
) -> None:
    """Add one ledger entry to its cell of every grain (called with the ledger's own upsert)."""
    seconds = int(_utc(at).timestamp())
    rows = [{"grain_s": g, "start_s": seconds - seconds % g, "bucket": bucket, "images": images,
             "device_seconds": device_seconds, "dollars": dollars} for g in GRAINS]  # fmt: skip
    add_to_rows(session, CostRollup, keys=["grain_s", "start_s", "bucket"],
                added=["images", "device_seconds", "dollars"], rows=rows)  # fmt: skip


def rebuild_costs(session: Session) -> None:
    """Recompute the cost roll-up from the minute ledger (an upgrade, a bulk load)."""
    dialect = session.get_bind().dialect.name
    session.execute(delete(CostRollup))
    seconds = epoch_us(CostLedger.minute, dialect) // 1_000_000
    for grain in GRAINS:
        start = (seconds // grain) * grain
        rows = select(
            start,
            CostLedger.bucket,
            func.sum(CostLedger.images),
            func.sum(CostLedger.device_seconds),
            func.sum(CostLedger.dollars),
        ).group_by(start, CostLedger.bucket)
        session.execute(
            insert(CostRollup).from_select(
                ["start_s", "bucket", "images", "device_seconds", "dollars", "grain_s"],
                rows.add_columns(_literal(grain)),
            )
        )


def _literal(value: int) -> Any:
    from sqlalchemy import literal

    return literal(value, Integer)


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
