"""Per-slot series for the dashboard, read from the roll-ups plus the unrolled tail.

A window is cut into equal slots; each slot is covered by the coarsest roll-up cells that fit
inside it (days, then hours, then 5 minutes: ``cascade.rollup.GRAINS``) and raw rows for what is
left — the newest few minutes, and slots shorter than 5 minutes (the 1-hour view). Cells of one
grain that follow each other are read with one grouped query, so a 30-day view is two or three
queries over a few thousand roll-up rows, whatever the number of decisions.

The decision cells count what each submission's roll-up record says (``cascade.rollup``). The
few rows whose decision changed since (``ix_submissions_unrolled``) are read and corrected for —
their counted contribution out, their decision now in — so the figures equal a direct count of
the submissions at any moment, not only after the next roll-up.
"""

from __future__ import annotations

import bisect
import functools
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import ColumnElement, bindparam, func, select
from sqlalchemy.orm import Session

from cascade import sketch
from cascade.cost import BUCKETS
from cascade.db.schema import CostLedger, CostRollup, DecisionRollup, LatencyRollup, Submission
from cascade.rollup import GRAINS, contributions, epoch_us, unrolled_rows

DECIDERS = ("stage1", "stage2", "human", "cache")
NICE_STEPS_S = (60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)


@dataclass(frozen=True)
class Window:
    """A time window cut into equal slots; ``end`` may fall inside the last slot."""

    start: datetime
    end: datetime
    step_s: int

    @property
    def slots(self) -> list[tuple[datetime, datetime]]:
        step = timedelta(seconds=self.step_s)
        edges, at = [], self.start
        while at < self.end:
            edges.append((at, min(at + step, self.end)))
            at += step
        return edges


def make_window(*, end: datetime, span_s: int, points: int = 60) -> Window:
    """A window of ``span_s`` seconds ending at ``end``, with about ``points`` slots.

    Slot edges are whole multiples of the step since the epoch, so refreshing the page moves
    the window without reshuffling past slots, and roll-up cells never straddle two slots.
    """
    if span_s < 60 or points < 1:
        raise ValueError("a window spans at least one minute and has at least one slot")
    wanted = span_s / points
    step = next((s for s in NICE_STEPS_S if s >= wanted), NICE_STEPS_S[-1])
    end = end.astimezone(UTC)
    epoch = int((end - timedelta(seconds=span_s)).timestamp())
    start = datetime.fromtimestamp(epoch - epoch % step, UTC)
    return Window(start=start, end=end, step_s=step)


@dataclass(frozen=True)
class Piece:
    """``[lo, hi)`` of one slot, read from roll-up cells of ``grain`` seconds (None: raw rows)."""

    slot: int
    lo: datetime
    hi: datetime
    grain: int | None


@functools.lru_cache(maxsize=256)
def plan(window: Window) -> tuple[Piece, ...]:
    """Every slot cut into roll-up pieces and raw pieces, in time order."""
    return tuple(
        Piece(i, lo, hi, grain)
        for i, (a, b) in enumerate(window.slots)
        for lo, hi, grain in _cover(a, b)
    )


def _cover(lo: datetime, hi: datetime) -> list[tuple[datetime, datetime, int | None]]:
    """[lo, hi) as the coarsest whole cells that fit, finer cells beside them, raw at the edges."""
    if lo >= hi:
        return []
    for grain in sorted(GRAINS, reverse=True):
        first = -(-_seconds(lo) // grain) * grain  # the first cell edge at or after lo
        last = int(hi.timestamp()) // grain * grain
        if first < last:
            a, b = _at(first), _at(last)
            return [*_cover(lo, a), (a, b, grain), *_cover(b, hi)]
    return [(lo, hi, None)]


def _runs(pieces: tuple[Piece, ...]) -> list[tuple[int, datetime, datetime]]:
    """Roll-up pieces merged into (grain, lo, hi) runs of back-to-back pieces of one grain."""
    runs: list[tuple[int, datetime, datetime]] = []
    for p in pieces:
        if p.grain is None:
            continue
        if runs and runs[-1][0] == p.grain and runs[-1][2] == p.lo:
            runs[-1] = (p.grain, runs[-1][1], p.hi)
        else:
            runs.append((p.grain, p.lo, p.hi))
    return runs


def _slot_of(window: Window, start: Any) -> Any:
    """SQL: the slot index of a cell starting at ``start`` (epoch seconds)."""
    return (start - int(window.start.timestamp())) // window.step_s


def _cells(
    session: Session, window: Window, table: Any, columns: list[Any], keys: list[Any]
) -> list[Any]:
    """Grouped sums of roll-up cells per slot: rows of (slot, *keys, *sums), one query a run."""
    rows: list[Any] = []
    for grain, lo, hi in _runs(plan(window)):
        slot = _slot_of(window, table.start_s)
        rows += (
            session.connection()
            .execute(
                select(slot, *keys, *columns)
                .where(
                    table.grain_s == grain,
                    table.start_s >= _seconds(lo),
                    table.start_s < _seconds(hi),
                )
                .group_by(slot, *keys)
            )
            .all()
        )
    last = len(window.slots) - 1
    return [(min(int(r[0]), last), *r[1:]) for r in rows]


def decision_series(session: Session, *, window: Window) -> dict[str, list[int]]:
    """Decided images per slot: in all, by decider, and audit-sampled."""
    n = len(window.slots)
    out = {k: [0] * n for k in ("decided", "audit", *DECIDERS)}

    def add(slot: int, decider: str, audit: bool, count: int) -> None:
        out["decided"][slot] += count
        if audit:
            out["audit"][slot] += count
        if decider in DECIDERS:
            out[decider][slot] += count

    sums = [func.sum(DecisionRollup.decided)]
    keys = [DecisionRollup.decider, DecisionRollup.audit]
    for slot, decider, audit, count in _cells(session, window, DecisionRollup, sums, keys):
        add(slot, decider, bool(audit), int(count))
    stmt = select(
        func.count(),
        func.count().filter(Submission.audit.is_(True)),
        *(func.count().filter(Submission.decided_by == d) for d in DECIDERS),
    ).where(Submission.decided_at >= _bind("a"), Submission.decided_at < _bind("b"))
    conn = session.connection()
    for piece in _raw(window):
        total, audit_n, *by = conn.execute(stmt, {"a": piece.lo, "b": piece.hi}).one()
        out["decided"][piece.slot] += int(total)
        out["audit"][piece.slot] += int(audit_n)
        for decider, count in zip(DECIDERS, by, strict=True):
            out[decider][piece.slot] += int(count)
    decided, _ = _unrolled_corrections(session, window)
    for (slot, decider, audit), count in decided.items():
        add(slot, decider, audit, count)
    return out


def latency_sketches(session: Session, *, window: Window) -> list[dict[int, int]]:
    """Upload-to-decision latency per slot as a sketch (``cascade.sketch``) of every decision."""
    out: list[dict[int, int]] = [defaultdict(int) for _ in window.slots]
    for slot, bucket, count in _cells(
        session, window, LatencyRollup, [func.sum(LatencyRollup.n)], [LatencyRollup.bucket]
    ):
        out[slot][int(bucket)] += int(count)
    dialect = session.get_bind().dialect.name
    latency = epoch_us(Submission.decided_at, dialect) - epoch_us(Submission.created_at, dialect)
    stmt = select(latency).where(
        Submission.decided_at >= _bind("a"), Submission.decided_at < _bind("b")
    )
    conn = session.connection()
    for piece in _raw(window):
        values = conn.execute(stmt, {"a": piece.lo, "b": piece.hi}).scalars().all()
        buckets = sketch.buckets_of(np.asarray(values, dtype=np.int64))
        for bucket, count in zip(*np.unique(buckets, return_counts=True), strict=True):
            out[piece.slot][int(bucket)] += int(count)
    _, latencies = _unrolled_corrections(session, window)
    for (slot, bucket), count in latencies.items():
        out[slot][bucket] += count
    return [{b: n for b, n in s.items() if n} for s in out]


def ledger_series(session: Session, *, window: Window) -> dict[str, list[float]]:
    """Dollars and images per ledger bucket and slot: cost roll-up cells, ledger minutes for
    the raw pieces (conditional sums over one indexed minute range each)."""
    n = len(window.slots)
    out = {f"{b}_{k}": [0.0] * n for b in BUCKETS for k in ("images", "dollars")}
    sums = [func.sum(CostRollup.images), func.sum(CostRollup.dollars)]
    for slot, bucket, images, dollars in _cells(
        session, window, CostRollup, sums, [CostRollup.bucket]
    ):
        if bucket in BUCKETS:
            out[f"{bucket}_images"][slot] += float(images)
            out[f"{bucket}_dollars"][slot] += float(dollars)
    columns: list[ColumnElement[Any]] = []
    for bucket in BUCKETS:
        mine = CostLedger.bucket == bucket
        columns += [
            func.coalesce(func.sum(CostLedger.images).filter(mine), 0),
            func.coalesce(func.sum(CostLedger.dollars).filter(mine), 0.0),
        ]
    stmt = select(*columns).where(CostLedger.minute >= _bind("a"), CostLedger.minute < _bind("b"))
    conn = session.connection()
    for piece in _raw(window):
        row = conn.execute(stmt, {"a": piece.lo, "b": piece.hi}).one()
        for j, bucket in enumerate(BUCKETS):
            out[f"{bucket}_images"][piece.slot] += float(row[2 * j])
            out[f"{bucket}_dollars"][piece.slot] += float(row[2 * j + 1])
    return out


def _raw(window: Window) -> list[Piece]:
    return [p for p in plan(window) if p.grain is None]


def _unrolled_corrections(
    session: Session, window: Window
) -> tuple[dict[tuple[int, str, bool], int], dict[tuple[int, int], int]]:
    """What the unrolled rows change in the roll-up pieces of this window, per slot.

    Their counted contribution is in the cells and must come out; their decision now must come
    in. Only pieces read from cells need it: raw pieces already see the decisions as they are.
    """
    pieces = [p for p in plan(window) if p.grain is not None]
    starts = [_seconds(p.lo) * 1_000_000 for p in pieces]
    rows = session.connection().execute(unrolled_rows(session.get_bind().dialect.name)).all()
    decided: dict[tuple[int, str, bool], int] = defaultdict(int)
    latency: dict[tuple[int, int], int] = defaultdict(int)
    if not rows or not pieces:
        return decided, latency
    finest = min(GRAINS)
    changes_d, changes_l = contributions(rows)
    for (grain, start, decider, audit), count in changes_d.items():
        slot = _piece_slot(pieces, starts, start) if grain == finest else None
        if slot is not None:
            decided[(slot, decider, audit)] += count
    for (grain, start, bucket), count in changes_l.items():
        slot = _piece_slot(pieces, starts, start) if grain == finest else None
        if slot is not None:
            latency[(slot, bucket)] += count
    return decided, latency


def _piece_slot(pieces: list[Piece], starts: list[int], start_s: int) -> int | None:
    """The slot of the roll-up piece holding the 5-minute cell at ``start_s``, if any."""
    i = bisect.bisect_right(starts, start_s * 1_000_000) - 1
    if i < 0 or start_s >= _seconds(pieces[i].hi):
        return None
    return pieces[i].slot


def _seconds(at: datetime) -> int:
    """Whole epoch seconds of ``at``, rounded up (roll-up pieces start on whole seconds)."""
    whole = int(at.timestamp())
    return whole if whole == at.timestamp() else whole + 1


def _at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _bind(name: str) -> Any:
    return bindparam(name, type_=CostLedger.minute.type)
