"""Statements run on the driver (`sparkjobs.store.direct`) read and write what a
Session would, fail as a Session fails, and leave nothing behind when they fail."""

from __future__ import annotations

import functools
import socket
import sqlite3
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, bindparam, insert, literal, select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from sparkjobs.store import direct
from sparkjobs.store.direct import transaction
from sparkjobs.store.engine import make_engine
from sparkjobs.store.keyed import insert_new
from sparkjobs.store.models import TERMINAL, Run, RunKind, Status, Trigger
from sparkjobs.store.runs import create_run, run_values
from sparkjobs.store.schema import upgrade

RUNS = Run.__table__


@functools.cache
def _read_run() -> Any:
    columns = (RUNS.c.id, RUNS.c.job, RUNS.c.kind, RUNS.c.status, RUNS.c.params,
               RUNS.c.created_at, RUNS.c.interactive)  # fmt: skip
    return select(*columns).where(RUNS.c.id == bindparam("p_id", type_=RUNS.c.id.type))


@functools.cache
def _finish_run() -> Any:
    """A finished run stays finished: NOT IN with literal final statuses."""
    return (
        update(RUNS)
        .where(RUNS.c.id == bindparam("p_id", type_=RUNS.c.id.type),
               RUNS.c.status.not_in([literal(s, RUNS.c.status.type) for s in TERMINAL]))
        .values(status=bindparam("p_status", type_=RUNS.c.status.type),
                finished_at=bindparam("p_at", type_=RUNS.c.finished_at.type))
        .returning(RUNS.c.status, RUNS.c.finished_at)
    )  # fmt: skip


def _new_run(sessions: sessionmaker[Session], **params: Any) -> Run:
    with sessions.begin() as session:
        run, _ = create_run(session, job="direct", kind=RunKind.CHAT, trigger=Trigger.SUBMIT,
                            params=params, interactive=True)  # fmt: skip
    return run


def test_a_row_read_on_the_driver_is_the_row_a_session_reads(
    sessions: sessionmaker[Session], engine: Engine
) -> None:
    run = _new_run(sessions, voice="tara", n=3, nested={"a": [1, 2]})
    with transaction(engine) as tx:
        row = tx.execute(_read_run(), {"p_id": run.id}).first()
    with sessions() as session:
        expected = session.execute(_read_run(), {"p_id": run.id}).one()
    assert tuple(row) == tuple(expected)
    assert (type(row.id), row.kind, row.status) == (uuid.UUID, RunKind.CHAT, Status.QUEUED)
    assert row.params == {"voice": "tara", "n": 3, "nested": {"a": [1, 2]}}
    assert row.created_at.tzinfo is not None
    assert row.interactive is True


def test_a_write_on_the_driver_is_seen_by_a_session_and_guards_like_one(
    sessions: sessionmaker[Session], engine: Engine
) -> None:
    run = _new_run(sessions)
    at = datetime(2026, 11, 28, 3, 30, tzinfo=UTC)
    with transaction(engine) as tx:
        first = tx.execute(_finish_run(), {"p_id": run.id, "p_status": Status.FAILED, "p_at": at})
        again = tx.execute(_finish_run(), {"p_id": run.id, "p_status": Status.SUCCEEDED,
                                           "p_at": at})  # fmt: skip
    assert (first.rowcount, first.all()) == (1, [(Status.FAILED, at)])
    assert (again.rowcount, again.first()) == (0, None)  # finished already: no change
    with sessions() as session:
        stored = session.get_one(Run, run.id)
        assert (stored.status, stored.finished_at) == (Status.FAILED, at)


def test_a_driver_error_is_sqlalchemys_and_the_transaction_leaves_nothing(
    sessions: sessionmaker[Session], engine: Engine
) -> None:
    run = _new_run(sessions)
    duplicate = insert(RUNS).values(
        id=bindparam("p_id", type_=RUNS.c.id.type), job="dup", kind=RunKind.CHAT,
        trigger=Trigger.SUBMIT, idempotency_key=run.idempotency_key, status=Status.QUEUED,
        created_at=datetime.now(UTC),
    )  # fmt: skip
    at = datetime.now(UTC)
    finish = {"p_id": run.id, "p_status": Status.FAILED, "p_at": at}

    def finish_then(then: Callable[[direct.Transaction], object]) -> None:
        with transaction(engine) as tx:
            tx.execute(_finish_run(), finish)
            then(tx)

    with pytest.raises(IntegrityError):  # the key is taken
        finish_then(lambda tx: tx.execute(duplicate, {"p_id": uuid.uuid4()}))
    with pytest.raises(ZeroDivisionError):  # not the driver's
        finish_then(lambda tx: 1 / 0)
    with sessions() as session:
        assert session.get_one(Run, run.id).status == Status.QUEUED  # both rolled back
    with transaction(engine) as tx:  # the pool's connection is fine afterwards
        assert tx.scalar(_read_run(), {"p_id": run.id}) == run.id


def test_autocommit_commits_each_statement_on_postgresql_and_leaves_the_pool_as_it_was(
    sessions: sessionmaker[Session], engine: Engine
) -> None:
    at = datetime.now(UTC)

    def finish_then_fail(run_id: uuid.UUID, *, autocommit: bool) -> None:
        with transaction(engine, autocommit=autocommit) as tx:
            tx.execute(_finish_run(), {"p_id": run_id, "p_status": Status.FAILED, "p_at": at})
            raise ZeroDivisionError  # after the statement

    def status(run_id: uuid.UUID) -> Status:
        with sessions() as session:
            return session.get_one(Run, run_id).status

    run = _new_run(sessions)
    with pytest.raises(ZeroDivisionError):
        finish_then_fail(run.id, autocommit=True)
    committed = engine.dialect.name == "postgresql"  # SQLite ignores autocommit
    assert status(run.id) == (Status.FAILED if committed else Status.QUEUED)
    # The pooled connection is back to transactions: this one rolls back as a whole.
    other = _new_run(sessions)
    with pytest.raises(ZeroDivisionError):
        finish_then_fail(other.id, autocommit=False)
    assert status(other.id) == Status.QUEUED


# Text says nothing of what it returns: the cursor is asked after it ran.
_TEXT_READ = text("SELECT job FROM runs WHERE job = :job")
_TEXT_WRITE = text("UPDATE runs SET job = :job WHERE job = :was")


def test_rows_come_back_from_what_returns_them_and_only_from_that(
    sessions: sessionmaker[Session], engine: Engine
) -> None:
    run = _new_run(sessions)
    with transaction(engine) as tx:
        unchanged = tx.execute(_finish_run(), {"p_id": uuid.uuid4(), "p_status": Status.FAILED,
                                               "p_at": datetime.now(UTC)})  # fmt: skip
        assert (unchanged.all(), unchanged.rowcount) == ([], 0)  # RETURNING, no row matched
        written = tx.execute(_TEXT_WRITE, {"job": "renamed", "was": "direct"})
        assert (written.all(), written.rowcount) == ([], 1)
        assert tx.execute(_TEXT_READ, {"job": "renamed"}).all() == [("renamed",)]
        finished = tx.execute(_finish_run(), {"p_id": run.id, "p_status": Status.FAILED,
                                              "p_at": datetime.now(UTC)})  # fmt: skip
        assert [row.status for row in finished.all()] == [Status.FAILED]


def test_statements_that_need_a_session_are_refused_with_the_reason(engine: Engine) -> None:
    with transaction(engine) as tx:
        with pytest.raises(TypeError, match="ORM entities"):
            tx.execute(select(Run))
        with pytest.raises(TypeError, match="expanding IN"):
            tx.execute(select(RUNS.c.id).where(RUNS.c.status.in_(TERMINAL)))


def test_statements_built_per_call_are_stopped_before_they_pile_up(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(direct, "MOST_STATEMENTS", 2)
    monkeypatch.setattr(direct, "_caches", {})  # this test's own cache
    with transaction(engine) as tx:
        for _ in range(2):  # built once: compiled once, whatever the count
            tx.execute(_read_run(), {"p_id": uuid.uuid4()})
        tx.execute(select(RUNS.c.id).where(RUNS.c.job == "built-per-call"))
        with pytest.raises(TypeError, match="build each once"):
            tx.execute(select(RUNS.c.id).where(RUNS.c.job == "built-per-call"))


def test_on_sqlite_it_takes_the_write_lock_at_its_start(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    upgrade(url)
    engine = make_engine(url)
    other = sqlite3.connect(tmp_path / "store.db", timeout=0.1, isolation_level=None)
    try:
        with transaction(engine), pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
        other.execute("BEGIN IMMEDIATE")  # free again once it committed
        other.execute("ROLLBACK")
    finally:
        other.close()
        engine.dispose()


def test_a_database_that_does_not_answer_is_sqlalchemys_operational_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    engine = make_engine(f"postgresql+psycopg://postgres@127.0.0.1:{port}/test")
    try:
        with pytest.raises(OperationalError), transaction(engine):
            pass
    finally:
        engine.dispose()


def test_a_list_of_parameters_inserts_a_row_for_each(
    sessions: sessionmaker[Session], engine: Engine
) -> None:
    rows = [run_values(job=f"many-{n}", kind=RunKind.CHAT, trigger=Trigger.SUBMIT,
                       params={"n": n}) for n in range(3)]  # fmt: skip
    with transaction(engine) as tx:
        insert_new(tx, Run, rows)
    with sessions() as session:
        stored = session.scalars(select(Run).where(Run.job.like("many-%")).order_by(Run.job))
        assert [(r.id, r.params, r.status) for r in stored] == [
            (row["id"], {"n": n}, Status.QUEUED) for n, row in enumerate(rows)
        ]


@functools.cache
def _set_params() -> Any:
    return (
        update(RUNS)
        .where(RUNS.c.id == bindparam("p_id", type_=RUNS.c.id.type))
        .values(params=bindparam("p_params", type_=RUNS.c.params.type))
    )


@functools.cache
def _params_is_null() -> Any:
    return select(RUNS.c.params.is_(None)).where(
        RUNS.c.id == bindparam("p_id", type_=RUNS.c.id.type)
    )


def test_none_is_stored_as_a_session_stores_it(
    sessions: sessionmaker[Session], engine: Engine
) -> None:
    ours, theirs = _new_run(sessions, n=1), _new_run(sessions, n=2)
    with transaction(engine) as tx:
        tx.execute(_set_params(), {"p_id": ours.id, "p_params": None})
    with sessions.begin() as session:
        session.execute(_set_params(), {"p_id": theirs.id, "p_params": None})
    with sessions() as session:
        stored = [session.scalar(_params_is_null(), {"p_id": run.id}) for run in (ours, theirs)]
        read = [session.get_one(Run, run.id).params for run in (ours, theirs)]
    assert stored[0] == stored[1]
    assert read == [None, None]
