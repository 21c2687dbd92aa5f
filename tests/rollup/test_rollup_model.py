"""The roll-ups equal a direct computation from the submissions, whatever happened before:
random batches decided and rolled up as the stage workers do, batches replayed, transactions
that crash between their writes (after the decisions, inside the roll-up, before the commit),
human corrections left for the sweep, and partial sweeps. Checked two ways after every run:

- what the dashboard reads (roll-up cells + the correction for unrolled rows + raw tail) equals
  counts and sketches computed here from the raw rows, for several windows;
- after the sweep has caught up, every roll-up cell of every grain equals the same cell
  computed here from the raw rows (and no cell is counted that the rows do not explain).

The direct computation below uses Python datetimes only: no code of ``cascade.rollup``.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from cascade import rollup, series, sketch
from cascade.context import Context
from cascade.db.schema import (
    DecisionRollup,
    Image,
    LatencyRollup,
    Submission,
    Tenant,
)
from cascade.decisions import finalize
from cascade.policy import Decider, Outcome

T_END = datetime(2026, 3, 10, 12, 3, 17, 250_000, tzinfo=UTC)
N_SUBMISSIONS = 24
DECIDERS = [Decider.STAGE1, Decider.STAGE2, Decider.HUMAN, Decider.CACHE]
SPANS = (3600, 6 * 3600, 86400, 3 * 86400)


class Crash(Exception):
    """A worker dying in the middle of its batch transaction."""


@dataclass(frozen=True)
class Decide:
    """One stage batch: these submissions decided at ``at`` by ``decider``; maybe a crash."""

    picks: tuple[int, ...]
    decider: int
    offset_s: float
    outcome: int
    crash: str  # "", "after_decisions", "inside_rollup", "before_commit"


@dataclass(frozen=True)
class Replay:
    """A batch delivered again: the same ids through the same one call."""

    picks: tuple[int, ...]


@dataclass(frozen=True)
class Correct:
    """A human label corrects a decision (not rolled up until the sweep)."""

    pick: int
    offset_s: float


@dataclass(frozen=True)
class Sweep:
    """Beat's catch-up, maybe limited to a few rows."""

    limit: int


picks = st.lists(st.integers(0, N_SUBMISSIONS - 1), min_size=1, max_size=8, unique=True)
# Decisions up to ~2.5 days before T_END, some in the newest minutes (the raw tail).
offsets = st.one_of(st.floats(0, 2.5 * 86400), st.floats(0, 400))
operations = st.one_of(
    st.builds(
        Decide,
        picks.map(tuple),
        st.integers(0, 3),
        offsets,
        st.integers(0, 1),
        st.sampled_from(["", "", "after_decisions", "inside_rollup", "before_commit"]),
    ),
    st.builds(Replay, picks.map(tuple)),
    st.builds(Correct, st.integers(0, N_SUBMISSIONS - 1), offsets),
    st.builds(Sweep, st.sampled_from([1, 3, 1000])),
)


@pytest.fixture
def world(context: Context) -> Iterator[Context]:
    with context.sessions() as session:
        session.add(Tenant(id=1, name="t"))
        session.add(Image(sha256="0" * 64, phash=0, size_bytes=1, width=1, height=1,
                          format="png", blob_key="k"))  # fmt: skip
        session.commit()
    yield context


def _reset(session: Session, seed_created: list[float]) -> list[str]:
    for table in (Submission, DecisionRollup, LatencyRollup):
        session.execute(delete(table))
    ids = [str(uuid.UUID(int=i + 1)) for i in range(len(seed_created))]
    for sid, back_s in zip(ids, seed_created, strict=True):
        session.add(Submission(id=sid, tenant_id=1, image_sha256="0" * 64, state="queued",
                               audit=sid[-1] in "13579", created_at=_at(back_s + 3 * 86400)))  # fmt: skip
    session.commit()
    return ids


def _at(back_s: float) -> datetime:
    """``back_s`` seconds before T_END, to the microsecond (what the database keeps)."""
    return T_END - timedelta(microseconds=round(back_s * 1e6))


def _run(session: Session, ids: list[str], op: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    if isinstance(op, Decide):
        _decide(session, ids, op, monkeypatch)
    elif isinstance(op, Replay):
        chosen = [ids[i] for i in op.picks]
        rollup.apply(session, chosen)
        session.commit()
    elif isinstance(op, Correct):
        sub = session.get(Submission, ids[op.pick])
        assert sub is not None
        if sub.decided_at is not None:
            at = max(_at(op.offset_s), sub.created_at)
            flipped = Outcome.BLOCK if sub.decision == Outcome.ALLOW else Outcome.ALLOW
            finalize(sub, outcome=flipped, decider=Decider.HUMAN, at=at)
        session.commit()
    else:
        rollup.catch_up(session, limit=op.limit)
        session.commit()


def _decide(session: Session, ids: list[str], op: Decide, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a stage worker does: decide the batch's undecided images, one roll-up call, commit."""
    chosen = [ids[i] for i in op.picks]
    try:
        for sid in chosen:
            sub = session.get(Submission, sid)
            assert sub is not None
            if sub.state != "queued":
                continue  # redelivered: already decided, skipped as the pipeline skips it
            at = max(_at(op.offset_s), sub.created_at)
            finalize(sub, outcome=[Outcome.ALLOW, Outcome.BLOCK][op.outcome],
                     decider=DECIDERS[op.decider], at=at)  # fmt: skip
        session.flush()
        if op.crash == "after_decisions":
            raise Crash
        if op.crash == "inside_rollup":
            with monkeypatch.context() as m:
                calls = []

                def dying(*args: Any, **kwargs: Any) -> None:
                    calls.append(1)
                    if len(calls) == 2:  # the decision cells are written, the sketch is not
                        raise Crash
                    real(*args, **kwargs)

                real = rollup.add_to_rows
                m.setattr(rollup, "add_to_rows", dying)
                rollup.apply(session, chosen)
        else:
            rollup.apply(session, chosen)
        if op.crash == "before_commit":
            raise Crash
        session.commit()
    except Crash:
        session.rollback()


# -- the direct computation ---------------------------------------------------------------------


def _rows(session: Session) -> list[tuple[datetime, datetime | None, str | None, bool]]:
    return [
        (r.created_at, r.decided_at, r.decided_by, r.audit)
        for r in session.scalars(select(Submission))
    ]


def _latency_us(created: datetime, decided: datetime) -> int:
    return (decided - created) // timedelta(microseconds=1)


def _direct_cells(rows: list[Any]) -> tuple[Counter[Any], Counter[Any]]:
    decided: Counter[Any] = Counter()
    latency: Counter[Any] = Counter()
    for created, at, by, audit in rows:
        if at is None:
            continue
        epoch = int(at.timestamp())
        for grain in rollup.GRAINS:
            start = epoch - epoch % grain
            decided[(grain, start, by or "", audit)] += 1
            latency[(grain, start, sketch.bucket_of(_latency_us(created, at)))] += 1
    return decided, latency


def _direct_slots(window: series.Window, rows: list[Any]) -> tuple[dict[str, list[int]], list[Any]]:
    slots = window.slots
    counts = {k: [0] * len(slots) for k in ("decided", "audit", *series.DECIDERS)}
    sketches: list[Counter[int]] = [Counter() for _ in slots]
    for created, at, by, audit in rows:
        for i, (a, b) in enumerate(slots):
            if at is not None and a <= at < b:
                counts["decided"][i] += 1
                counts["audit"][i] += int(audit)
                if by in series.DECIDERS:
                    counts[str(by)][i] += 1
                sketches[i][sketch.bucket_of(_latency_us(created, at))] += 1
    return counts, [dict(s) for s in sketches]


def _table(session: Session, table: Any, keys: list[str], value: str) -> Counter[Any]:
    out: Counter[Any] = Counter()
    for row in session.execute(select(table)).scalars():
        n = getattr(row, value)
        if n:
            out[tuple(getattr(row, k) for k in keys)] = n
    return out


@settings(
    max_examples=40,
    deadline=None,
    # One database for all examples: each example starts by emptying the tables it uses.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    created=st.lists(st.floats(0, 2 * 86400), min_size=N_SUBMISSIONS, max_size=N_SUBMISSIONS),
    ops=st.lists(operations, min_size=1, max_size=14),
)
def test_rollups_equal_a_direct_computation(
    world: Context, monkeypatch: pytest.MonkeyPatch, created: list[float], ops: list[Any]
) -> None:
    with world.sessions() as session:
        ids = _reset(session, created)
        for op in ops:
            _run(session, ids, op, monkeypatch)
        session.expire_all()
        rows = _rows(session)
        for span in SPANS:
            window = series.make_window(end=T_END, span_s=span, points=60)
            expected_counts, expected_sketches = _direct_slots(window, rows)
            assert series.decision_series(session, window=window) == expected_counts
            assert series.latency_sketches(session, window=window) == expected_sketches
        while rollup.catch_up(session, limit=7):
            session.commit()
        session.commit()
        decided, latency = _direct_cells(rows)
        keys = ["grain_s", "start_s", "decider", "audit"]
        assert _table(session, DecisionRollup, keys, "decided") == decided
        assert _table(session, LatencyRollup, ["grain_s", "start_s", "bucket"], "n") == latency
        assert session.scalar(select(Submission.id).where(rollup.unrolled())) is None
