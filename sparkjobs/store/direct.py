"""The worker's hottest transactions, run straight on the database driver.

Every task opens and closes its step with a short transaction of one to four
statements. Through a Session, SQLAlchemy's own work (the session's begin and commit,
an execution context, a cache key and a result object for each statement) costs about
twice what the driver and the database do (docs/benchmarks.md). `transaction` runs
Core statements built once (`sparkjobs.store.statements`) on a pooled connection's
cursor instead, each compiled once per dialect. Parameters and results go through
the columns' own type processors, so the values written and read are those a Session
would write and read; a driver error is raised as SQLAlchemy's `DBAPIError`, as a
Session raises it. The functions of `sparkjobs.execution.state` take either.
"""

from __future__ import annotations

import threading
from collections import namedtuple
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

MOST_STATEMENTS = 64  # statements built per call would fill this: see `Transaction.execute`


@dataclass
class _Compiled:
    """One statement compiled for one dialect; its result's shape once it has run."""

    sql: str
    order: tuple[str, ...] | None  # the parameters' order (positional drivers), or None
    constants: dict[str, Any]  # the statement's own values, processed
    processors: dict[str, Callable[[Any], Any]]  # the caller's parameters' processors
    types: tuple[Any, ...]  # the result columns' types, if the statement names them
    # Whether it returns rows: known from a SELECT or a DML statement, not from text.
    # (Asking the cursor costs psycopg an object per column, at every execution.)
    returns_rows: bool | None
    shape: tuple[type, tuple[Callable[[Any], Any] | None, ...]] | None = field(default=None)


def _compile(statement: Any, dialect: Dialect) -> _Compiled:
    if any(isinstance(d.get("type"), type) for d in getattr(statement, "column_descriptions", ())):
        raise TypeError(
            "a statement that selects ORM entities needs a Session; select columns instead"
        )
    compiled = statement.compile(dialect=dialect)
    if "POSTCOMPILE" in compiled.string:
        raise TypeError(
            "an expanding IN parameter (`in_(list)`) needs a Session; "
            "list the values as literal() expressions instead"
        )
    constants, processors = {}, {}
    for bind, name in compiled.bind_names.items():
        process = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if bind.required:
            if process is not None:
                processors[name] = process
        else:
            value = bind.effective_value
            constants[name] = value if process is None else process(value)
    columns = getattr(statement, "selected_columns", None)
    if columns is None and getattr(statement, "_returning", None):
        columns = statement._returning  # an INSERT's or UPDATE's RETURNING
    order = tuple(compiled.positiontup) if compiled.positional else None
    returns_rows = True if columns else False if getattr(statement, "is_dml", False) else None
    return _Compiled(compiled.string, order, constants, processors,
                     tuple(c.type for c in columns or ()), returns_rows)  # fmt: skip


def _bound(compiled: _Compiled, params: Mapping[str, Any]) -> Any:
    """The driver's parameters: the statement's own values and the caller's, processed."""
    values = dict(compiled.constants)
    for name, value in params.items():
        process = compiled.processors.get(name)
        values[name] = value if process is None else process(value)
    if compiled.order is None:
        return values
    return tuple(values[name] for name in compiled.order)


class Rows:
    """What one statement returned (as much of a `Result` as the store's functions use)."""

    def __init__(self, rows: Sequence[Any], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def first(self) -> Any:
        return self._rows[0] if self._rows else None

    def all(self) -> list[Any]:
        return list(self._rows)

    def scalar(self) -> Any:
        return self._rows[0][0] if self._rows else None


class Transaction:
    """A transaction on one driver connection; `execute` and `scalar` as a Session's."""

    def __init__(self, engine: Engine, cursor: Any, cache: dict[int, tuple[Any, _Compiled]]):
        self._engine = engine
        self._cursor = cursor
        self._cache = cache

    def get_bind(self) -> Engine:
        return self._engine

    def execute(
        self,
        statement: Any,
        params: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    ) -> Rows:
        """Run `statement` (built once: it is compiled once and kept) with `params`,
        or once for each set of parameters in a list of them (no rows returned).

        Raises:
            TypeError: the statement selects ORM entities, expands a list, or is one
                of too many statements (built per call, it would be compiled each time).
        """
        compiled = self._compiled(statement)
        cursor = self._cursor
        if params is not None and not isinstance(params, Mapping):
            cursor.executemany(compiled.sql, [_bound(compiled, each) for each in params])
            return Rows((), cursor.rowcount)
        cursor.execute(compiled.sql, _bound(compiled, params or {}))
        returns_rows = compiled.returns_rows
        if returns_rows is None:
            returns_rows = cursor.description is not None
        if not returns_rows:
            return Rows((), cursor.rowcount)
        return Rows(self._rows(compiled, cursor), cursor.rowcount)

    def scalar(self, statement: Any, params: Mapping[str, Any] | None = None) -> Any:
        return self.execute(statement, params).scalar()

    def _compiled(self, statement: Any) -> _Compiled:
        found = self._cache.get(id(statement))
        if found is not None and found[0] is statement:
            return found[1]
        if len(self._cache) >= MOST_STATEMENTS:
            raise TypeError(
                f"more than {MOST_STATEMENTS} statements run directly: build each once "
                "(functools.cache), or run it in a Session"
            )
        compiled = _compile(statement, self._engine.dialect)
        self._cache[id(statement)] = (statement, compiled)  # the statement kept: its id too
        return compiled

    def _rows(self, compiled: _Compiled, cursor: Any) -> list[Any]:
        if compiled.shape is None:  # the first run: names and processors from the cursor
            dialect = self._engine.dialect
            names = [column[0] for column in cursor.description]
            types = compiled.types if len(compiled.types) == len(names) else ()
            processors = tuple(
                kind.dialect_impl(dialect).result_processor(dialect, column[1])
                for kind, column in zip(types, cursor.description, strict=False)
            ) or (None,) * len(names)
            compiled.shape = (namedtuple("Row", names, rename=True), processors)
        row_type, processors = compiled.shape
        return [
            row_type(*(raw if p is None else p(raw)
                       for p, raw in zip(processors, values, strict=True)))
            for values in cursor.fetchall()
        ]  # fmt: skip


_caches: dict[str, dict[int, tuple[Any, _Compiled]]] = {}
_caches_lock = threading.Lock()


@contextmanager
def transaction(engine: Engine, *, autocommit: bool = False) -> Iterator[Transaction]:
    """A transaction on a connection from `engine`'s pool, committed at exit.

    On SQLite it takes the write lock at its start, as the store's sessions do
    (`sparkjobs.store.engine`). An exception rolls it back; a driver error comes out
    as `DBAPIError`, and a connection it found dead is dropped from the pool.

    `autocommit`: on PostgreSQL, each statement commits on its own, which saves the
    round trips of BEGIN and COMMIT; for a caller that writes in one statement (and
    may read after it). SQLite ignores it.
    """
    with _caches_lock:  # compiled per dialect: engines come and go, dialects do not
        cache = _caches.setdefault(engine.dialect.name, {})
    dbapi_error = engine.dialect.loaded_dbapi.Error
    try:
        connection = engine.raw_connection()
    except dbapi_error as exc:  # the pool raises the driver's own error
        raise DBAPIError.instance(
            None, None, exc, dbapi_error, connection_invalidated=True, dialect=engine.dialect
        ) from exc
    cursor = None
    alone = autocommit and engine.dialect.name == "postgresql"
    driver: Any = connection.dbapi_connection
    try:
        if alone:
            driver.autocommit = True
        cursor = connection.cursor()
        if engine.dialect.name == "sqlite":
            cursor.execute("BEGIN IMMEDIATE")
        yield Transaction(engine, cursor, cache)
        if not alone:
            connection.commit()
    except dbapi_error as exc:
        _rollback(connection)
        dead = engine.dialect.is_disconnect(exc, connection.dbapi_connection, cursor)
        if dead:
            connection.invalidate(exc)
        raise DBAPIError.instance(
            None, None, exc, dbapi_error, connection_invalidated=dead, dialect=engine.dialect
        ) from exc
    except BaseException:
        _rollback(connection)
        raise
    finally:
        if cursor is not None:
            cursor.close()
        if alone and connection.is_valid:
            try:
                driver.autocommit = False
            except Exception as exc:  # never back to the pool committing each statement
                connection.invalidate(exc)
        connection.close()  # back to the pool


def _rollback(connection: Any) -> None:
    with suppress(Exception):  # a dead connection: the caller invalidates it
        connection.rollback()


Executor = Session | Transaction  # what the step functions of the store run statements on
