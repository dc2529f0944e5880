"""Engines and sessions for the store, from a database URL, on SQLite or PostgreSQL.

SQLite runs in WAL mode with foreign keys on and a busy timeout, and every transaction
takes the write lock up front, except those of a `reading` session, which never write;
PostgreSQL goes through psycopg 3 with a short connect timeout so that the CLI fails fast.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

from sparkjobs.config.render import mask_url
from sparkjobs.errors import Unreachable

CONNECT_TIMEOUT_S = 5
POOL_SIZE = 12  # PostgreSQL connections a process keeps open when idle
POOL_OVERFLOW = 8  # and how many more it may open at once
BUSY_TIMEOUT_S = 30.0
PING_AFTER_IDLE_S = 2.0  # a pooled connection idle this long is tested before use
_READS_ONLY = "sparkjobs_reads_only"  # an execution option: see `reading`


def make_engine(
    url: str, *, connect_timeout_s: int = CONNECT_TIMEOUT_S, busy_timeout_s: float = BUSY_TIMEOUT_S
) -> Engine:
    """An engine for `url` (`sqlite:///PATH` or `postgresql+psycopg://...`).

    Args:
        url: the database URL, password included.
        connect_timeout_s: PostgreSQL: how long to wait for the server (libpq takes >= 2).
        busy_timeout_s: SQLite: how long a writer waits for another one's lock.

    Returns:
        An engine; nothing is connected yet.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(
            parsed, connect_args={"timeout": busy_timeout_s, "check_same_thread": False}
        )
        _configure_sqlite(engine, busy_timeout_s)
        return engine
    engine = create_engine(
        parsed,
        connect_args={
            "connect_timeout": max(2, connect_timeout_s),
            "application_name": "sparkjobs",
        },
        # Keep enough idle connections for a worker's threads: with SQLAlchemy's
        # default of 5, a connection returned while 5 are idle is closed, and a busy
        # worker of 8 threads opened a new one for about every tenth step. Opened on
        # demand, so a process that needs one keeps one; at most 20 at once.
        pool_size=POOL_SIZE,
        max_overflow=POOL_OVERFLOW,
    )
    _ping_after_idle(engine)
    return engine


def _ping_after_idle(engine: Engine) -> None:
    """Test a pooled connection at checkout if it sat idle for `PING_AFTER_IDLE_S`.

    After a server restart every pooled connection is dead: the ping finds one and
    SQLAlchemy reconnects, and a disconnect met mid-query makes it invalidate the
    whole pool, so none is reused. (An outage itself is retried by the task:
    sparkjobs.execution.failures.) SQLAlchemy's `pool_pre_ping` would ping at every
    checkout: a round trip for each transaction of a busy worker, whose connections
    were in use a moment ago.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        if record is not None:
            record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if time.monotonic() - record.info.get("idle_since", 0.0) < PING_AFTER_IDLE_S:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:  # dead: the pool drops it and connects again
            raise DisconnectionError(f"a pooled connection failed its ping: {exc}") from exc


def _configure_sqlite(engine: Engine, busy_timeout_s: float) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event open transactions instead of pysqlite.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # A deferred transaction that reads and then writes fails at once with
        # SQLITE_BUSY when another writer got in between; taking the write lock at
        # BEGIN makes concurrent writers wait on the busy timeout instead. A reader
        # takes no lock: in WAL mode it reads a snapshot while one writer goes on.
        reads_only = connection.get_execution_options().get(_READS_ONLY, False)
        connection.exec_driver_sql("BEGIN" if reads_only else "BEGIN IMMEDIATE")


def reading(sessions: sessionmaker[Session]) -> Session:
    """A session from `sessions` for reads only (`with reading(sessions) as session:`).

    On SQLite its transaction takes no write lock, so a page, a waiter or a periodic
    check reading the store never holds up a worker writing it (any other session
    takes the lock at its start, whether it writes or not). A write in it may fail
    with "database is locked" when another writer is busy. On PostgreSQL it is a plain
    session.
    """
    return sessions(execution_options={_READS_ONLY: True})


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions on `engine` whose objects stay readable after commit."""
    return sessionmaker(engine, expire_on_commit=False)


def open_store(url: str, *, connect_timeout_s: int = CONNECT_TIMEOUT_S) -> sessionmaker[Session]:
    """A session factory for the database at `url`; check it with `check_reachable`."""
    return session_factory(make_engine(url, connect_timeout_s=connect_timeout_s))


_shared: dict[str, sessionmaker[Session]] = {}
_shared_lock = threading.Lock()


def shared_sessions(url: str) -> sessionmaker[Session]:
    """This process's one session factory (and connection pool) for `url`.

    A worker's threads share it. It is kept until `dispose_shared`, never evicted
    silently: an evicted pool would leave its connections open until collected.
    """
    with _shared_lock:
        found = _shared.get(url)
        if found is None:
            found = _shared[url] = open_store(url)
        return found


def engine_of(sessions: sessionmaker[Session]) -> Engine:
    """The engine (and connection pool) that `sessions` binds its sessions to."""
    engine: Engine = sessions.kw["bind"]
    return engine


def shared_engine(url: str) -> Engine:
    """The engine of this process's session factory for `url` (`shared_sessions`)."""
    return engine_of(shared_sessions(url))


def dispose_shared(url: str | None = None) -> None:
    """Close the pooled connections of the shared factories (all, or `url`'s)."""
    with _shared_lock:
        for key in [url] if url is not None else list(_shared):
            sessions = _shared.pop(key, None)
            bind = sessions.kw.get("bind") if sessions is not None else None
            if bind is not None:
                bind.dispose()


def describe(url: str) -> str:
    """Where the database is, for people: its host and name, never its password."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return f"SQLite database {parsed.database or ':memory:'}"
    host = parsed.host or "localhost"
    return f"PostgreSQL database {parsed.database} on {host}:{parsed.port or 5432}"


def unreachable(url: str, exc: BaseException) -> Unreachable:
    """The error to raise when the database at `url` did not answer."""
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
    return Unreachable(
        f"{describe(url)} is unreachable ({mask_url(url)}): {reason}. "
        "Fix: check that the server runs and that database_url points at it"
    )


def check_reachable(engine: Engine) -> None:
    """Connect once.

    Raises:
        Unreachable: naming the database's host (password masked) and the driver's reason.
    """
    url = engine.url.render_as_string(hide_password=False)
    if engine.dialect.name == "sqlite" and engine.url.database:
        folder = Path(engine.url.database).parent
        if not folder.is_dir():
            raise Unreachable(
                f"{describe(url)} is unreachable: folder {folder} does not exist. "
                "Fix: run `sparkjobs db upgrade`, or check data_dir and database_url"
            )
    try:
        with engine.connect():
            pass
    except DBAPIError as exc:
        raise unreachable(url, exc) from exc
