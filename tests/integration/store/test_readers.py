"""On SQLite, a session that only reads takes no write lock; every other one does.

WAL mode lets readers go on while one writer writes, but a transaction that begins
IMMEDIATE holds the write lock from its start, reads or not: a page or a waiter
polling the store through such sessions would hold up the workers recording steps.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from sparkjobs.store.engine import make_engine, reading, session_factory
from sparkjobs.store.models import Run, RunKind, Trigger
from sparkjobs.store.runs import create_run
from sparkjobs.store.schema import upgrade


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    upgrade(url)
    engine = make_engine(url, busy_timeout_s=0.2)  # a blocked writer gives up quickly
    yield engine
    engine.dispose()


def _run(sessions: sessionmaker[Session]) -> Run:
    with sessions.begin() as session:
        run, _ = create_run(session, job="briefing", kind=RunKind.CHAT, trigger=Trigger.SUBMIT)
    return run


def _rename(sessions: sessionmaker[Session], run: Run, job: str) -> None:
    with sessions.begin() as session:
        session.execute(update(Run).where(Run.id == run.id).values(job=job))


def test_a_reading_session_never_holds_up_a_writer_and_reads_one_snapshot(
    engine: Engine,
) -> None:
    sessions = session_factory(engine)
    run = _run(sessions)
    with reading(sessions) as reader:
        before = reader.scalar(select(Run.job).where(Run.id == run.id))
        _rename(sessions, run, "digest")  # would time out if the reader held the lock
        during = reader.scalar(select(Run.job).where(Run.id == run.id))
    with reading(sessions) as reader:
        after = reader.scalar(select(Run.job).where(Run.id == run.id))
    assert (before, during, after) == ("briefing", "briefing", "digest")


def test_any_other_session_takes_the_write_lock_at_its_start(engine: Engine) -> None:
    sessions = session_factory(engine)
    run = _run(sessions)
    with sessions() as session:
        session.scalar(select(Run.job).where(Run.id == run.id))  # a read, in a writer's session
        with pytest.raises(OperationalError, match="database is locked"):
            _rename(sessions, run, "digest")
    _rename(sessions, run, "digest")  # the lock went with the session
