"""Writes of ORM rows without the unit of work: one statement per shape of change, not one per
row, and new rows inserted through Core."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from sqlalchemy import Column, insert, inspect, update
from sqlalchemy.orm import Session, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.sql.schema import ScalarElementColumnDefault

_UNKNOWN = object()  # a column value an INSERT chose that only reading the row back tells


def flush_by_shape(session: Session, rows: Sequence[Any]) -> None:
    """Write the changes of ``rows`` with one UPDATE (executemany) per set of changed columns.

    The unit of work batches only consecutive rows that change the same columns, in primary-key
    order; a batch with mixed routes would cost nearly a statement a row. Here rows are grouped
    first, written by primary key, and their changes then marked as written."""
    shapes: dict[tuple[type, frozenset[str]], list[dict[str, Any]]] = {}
    written: list[tuple[Any, dict[str, Any]]] = []
    for row in rows:
        state = inspect(row)
        changed = _changes(state)
        if not changed:
            continue
        keys = [state.mapper.get_property_by_column(c).key for c in state.mapper.primary_key]
        pk = dict(zip(keys, state.identity or (), strict=True))
        shapes.setdefault((type(row), frozenset(changed)), []).append(pk | changed)
        written.append((row, changed))
    with session.no_autoflush:  # or the unit of work writes them first, row by row
        for (model, _), params in shapes.items():
            # No synchronisation pass: the rows are marked as written just below (the pass
            # expired every changed attribute first, a third of this function's time).
            session.execute(update(model), params, execution_options={"synchronize_session": False})
    for row, changed in written:
        for key, value in changed.items():
            set_committed_value(row, key, value)


def _changes(state: Any) -> dict[str, Any]:
    """The changed column attributes of a loaded row: only those the session saw set (its
    ``committed_state``), not every attribute's history (a batch's rows have thirty each)."""
    columns = state.mapper.column_attrs
    changed = {}
    for key in state.committed_state:
        if key in columns and state.manager[key].impl.get_history(state, state.dict).has_changes():
            changed[key] = state.dict[key]
    return changed


def insert_new(session: Session, row: Any) -> None:
    """INSERT ``row``, a new ORM object, in one Core statement, then attach it to ``session`` as
    if loaded: later changes to it are flushed as UPDATEs (a caller that sets a field on the
    returned row must not lose it silently) and its relationships load. An attribute it was not
    given holds what the INSERT wrote where that is known without asking (NULL, or a constant
    default); the rest (a computed or server default) loads on first access.

    Why: the unit of work's flush of one upload's two rows cost more CPU than the statements
    themselves (measured on the API: about a fifth of a millisecond an upload on SQLite, a
    millisecond on PostgreSQL); and an attribute left to load on access (an upload's answer
    reads ``decision``) cost a SELECT of the whole row after the commit. Column defaults apply
    as for any insert; only attributes set on ``row`` are sent."""
    state = inspect(row)
    table = state.mapper.local_table
    values = {
        prop.columns[0].key: state.dict[prop.key]
        for prop in state.mapper.column_attrs
        if prop.key in state.dict
    }
    session.execute(_insert(table), values)
    make_transient_to_detached(row)
    session.add(row)
    for prop in state.mapper.column_attrs:
        if prop.key not in state.dict:
            value = _inserted(prop.columns[0], table)
            if value is not _UNKNOWN:
                set_committed_value(row, prop.key, value)


@lru_cache(maxsize=64)
def _insert(table: Any) -> Any:
    """``INSERT`` into ``table``, built once (its cache key too): the values come as parameters."""
    return insert(table)


def _inserted(column: Any, table: Any) -> Any:
    """What an INSERT that did not name ``column`` wrote into it, or ``_UNKNOWN``."""
    if not isinstance(column, Column) or column.table is not table:
        return _UNKNOWN  # an expression or another table's column: not written here
    if column.server_default is not None:
        return _UNKNOWN
    if column.default is None:
        return None
    return (
        column.default.arg if isinstance(column.default, ScalarElementColumnDefault) else _UNKNOWN
    )
