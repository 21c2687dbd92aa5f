"""The query plans the database chose for what the code ran, for tests that assert index use
(no timings: a plan is the same on any machine)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, event, text


@dataclass(frozen=True)
class Plan:
    statement: str
    plan: str


@contextmanager
def captured(engine: Engine) -> Iterator[list[Plan]]:
    """Every SELECT or UPDATE run on ``engine`` inside the block, with its plan: ``EXPLAIN QUERY
    PLAN`` on SQLite, ``EXPLAIN`` on PostgreSQL, on the same connection with the same
    parameters (EXPLAIN without ANALYZE runs nothing)."""
    plans: list[Plan] = []
    prefix = "EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite" else "EXPLAIN "

    def before(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if not statement.lstrip().upper().startswith(("SELECT", "UPDATE")):
            return
        raw = cursor.connection.cursor()
        try:
            raw.execute(prefix + statement, parameters)
            rows = raw.fetchall()
        finally:
            raw.close()
        plans.append(Plan(statement, "\n".join(" ".join(str(c) for c in r) for r in rows)))

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield plans
    finally:
        event.remove(engine, "before_cursor_execute", before)


def full_scans(
    plans: list[Plan],
    tables: tuple[str, ...],
    small_indexes: tuple[str, ...] = (),
    *,
    sorts: bool = True,
) -> list[Plan]:
    """Plans that read one of ``tables`` whole — a table scan, or on SQLite a walk over every
    entry of an index, unless it is one of ``small_indexes`` (partial indexes that hold only a
    few rows) — or, when ``sorts``, that sort rows an index could have given in order."""
    bad = []
    for p in plans:
        for line in p.plan.splitlines():
            words = line.replace("(", " ").split()
            if any(f"Seq Scan on {table}" in line for table in tables):
                bad.append(p)
            elif "SCAN" in words and any(t in words for t in tables):
                if not any(index in words for index in small_indexes):
                    bad.append(p)
            elif sorts and ("TEMP B-TREE FOR ORDER BY" in line or line.strip().startswith("Sort ")):
                bad.append(p)
    return bad


def uses(plans: list[Plan], index: str, *, only: bool = True) -> bool:
    """Whether some plan reads ``index`` — alone when ``only`` (SQLite: COVERING INDEX;
    PostgreSQL: Index Only Scan), else with the rows it points to."""
    if only:
        marks = (f"COVERING INDEX {index}", f"Index Only Scan using {index}")
    else:
        marks = (f"INDEX {index}", f"Scan using {index}")
    return any(mark in p.plan for p in plans for mark in marks)


def analyze(engine: Engine) -> None:
    """Planner statistics and, on PostgreSQL, the visibility map (as autovacuum keeps them)."""
    statement = "VACUUM ANALYZE" if engine.dialect.name == "postgresql" else "ANALYZE"
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(statement))
