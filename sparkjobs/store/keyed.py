"""Inserts on either engine, built once per shape: new rows, and keyed rows.

A row written twice (a redelivered task, two schedulers) must change nothing the
second time, so most writes are an INSERT that ignores a conflict or updates the
row that holds the key; rows with fresh keys are inserted plainly, in batches. Each
statement is built once per dialect, table and set of columns, with typed
parameters: a call only binds its values. Built per call, the expression, its cache
key and its parameters cost more Python than the round trip to the database.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import CursorResult, Table, bindparam, func, or_

from sparkjobs.store.models import Base

if TYPE_CHECKING:
    from sparkjobs.store.direct import Executor


def dialect_name(session: Executor) -> str:
    """ "postgresql" or "sqlite": the engine behind `session`."""
    return session.get_bind().dialect.name


def insert_ignoring_conflicts(
    session: Executor, entity: type[Base], values: Mapping[str, Any]
) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING, on either engine.

    Returns:
        True if this call inserted the row, False if a row with one of its unique keys
        already existed (or was being inserted by a transaction that then committed).
    """
    statement = _insert_ignoring(dialect_name(session), _table(entity), tuple(values))
    result = cast(CursorResult[Any], session.execute(statement, named_params(**values)))
    return result.rowcount == 1


def insert_new(session: Executor, entity: type[Base], rows: list[dict[str, Any]]) -> None:
    """Insert rows that cannot exist yet (fresh ids and keys, steps of runs this
    transaction created) in one batched statement: no conflict check, no read back."""
    if rows:
        statement = _insert(_table(entity), tuple(rows[0]))
        session.execute(statement, [named_params(**row) for row in rows])


def upsert(
    session: Executor, entity: type[Base], values: Mapping[str, Any], keys: tuple[str, ...]
) -> None:
    """INSERT, or UPDATE the non-key columns of the row with the same `keys`."""
    statement = _upsert(dialect_name(session), _table(entity), tuple(values), keys)
    session.execute(statement, named_params(**values))


def insert_or_fill(
    session: Executor,
    entity: type[Base],
    values: Mapping[str, Any],
    *,
    keys: tuple[str, ...],
    fill: tuple[str, ...],
) -> None:
    """INSERT, or give the row with the same `keys` the values of its `fill` columns
    that it has none for (NULL); a value already there is never replaced, and a row
    with every `fill` column set is not written at all. One statement either way."""
    statement = _insert_or_fill(dialect_name(session), _table(entity), tuple(values), keys, fill)
    session.execute(statement, named_params(**values))


def named_params(**values: Any) -> dict[str, Any]:
    """The parameters of a statement built on `typed_param`s: `p_` before each name."""
    return {f"p_{name}": value for name, value in values.items()}


def typed_param(table: Table, column: str) -> Any:
    """A parameter `p_<column>` typed as `column`, so its value goes through the column's
    type (aware times stored as UTC on SQLite, enums as their values, JSON encoded)."""
    return bindparam(f"p_{column}", type_=table.c[column].type)


def typed_values(table: Table, columns: tuple[str, ...]) -> dict[str, Any]:
    """A VALUES clause of `typed_param`s, one per column."""
    return {name: typed_param(table, name) for name in columns}


def dialect_insert(dialect: str) -> Any:
    """The INSERT construct of a dialect, with its ON CONFLICT clauses."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert


def _table(entity: type[Base]) -> Table:
    return cast(Table, entity.__table__)


@functools.cache
def _insert(table: Table, columns: tuple[str, ...]) -> Any:
    return table.insert().values(typed_values(table, columns))


@functools.cache
def _insert_ignoring(dialect: str, table: Table, columns: tuple[str, ...]) -> Any:
    statement = dialect_insert(dialect)(table).values(typed_values(table, columns))
    # SQLAlchemy keeps an INSERT's rowcount only when asked (psycopg would report -1).
    return statement.on_conflict_do_nothing().execution_options(preserve_rowcount=True)


@functools.cache
def _upsert(dialect: str, table: Table, columns: tuple[str, ...], keys: tuple[str, ...]) -> Any:
    statement = dialect_insert(dialect)(table).values(typed_values(table, columns))
    updates = {name: statement.excluded[name] for name in columns if name not in keys}
    return statement.on_conflict_do_update(index_elements=list(keys), set_=updates)


@functools.cache
def _insert_or_fill(
    dialect: str,
    table: Table,
    columns: tuple[str, ...],
    keys: tuple[str, ...],
    fill: tuple[str, ...],
) -> Any:
    statement = dialect_insert(dialect)(table).values(typed_values(table, columns))
    updates = {name: func.coalesce(table.c[name], statement.excluded[name]) for name in fill}
    missing = or_(*(table.c[name].is_(None) for name in fill))
    return statement.on_conflict_do_update(index_elements=list(keys), set_=updates, where=missing)
