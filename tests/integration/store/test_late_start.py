"""An attempt written whole with its step's success, on PostgreSQL (`succeed_at_once`
with the `worker` of a deferred start).

A step whose start was deferred is recorded at its end in one statement: the attempt
(closed), the step's and a queued run's start, the result and the success. It must
leave the same rows as a start and a success written apart, move a run that goes on
to running and one that ends to succeeded, and number a twin's attempt after the
twin's even when the twin took the number while the statement ran.
"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session, sessionmaker

from sparkjobs.store.attempts import succeed_at_once
from sparkjobs.store.direct import transaction
from sparkjobs.store.models import Attempt, AttemptStatus, Run, RunKind, Status, Step, Trigger
from sparkjobs.store.runs import add_step, create_run
from tests.support.locks import wait_for_a_lock_wait


@pytest.fixture
def engine(postgres_engine: Engine) -> Engine:
    """The statement is PostgreSQL's: on either leg."""
    return postgres_engine


STARTED = datetime(2026, 11, 29, 6, 0, tzinfo=UTC)
ENDED = STARTED + timedelta(milliseconds=3)


def _run(sessions: sessionmaker[Session], steps: int) -> tuple[uuid.UUID, list[uuid.UUID]]:
    with sessions.begin() as session:
        run, _ = create_run(session, job="late", kind=RunKind.PIPELINE, trigger=Trigger.SUBMIT)
        ids = [add_step(session, run.id, n, service="gemma", node="spark1", name="custom",
                        spec={"kind": "custom"}).id for n in range(steps)]  # fmt: skip
        return run.id, ids


def _succeed(
    engine: Engine, run_id: uuid.UUID, step_id: uuid.UUID, *, last: bool, worker: str = "w1"
) -> bool:
    with transaction(engine, autocommit=True) as tx:
        return succeed_at_once(
            tx, step_id, run_id, last=last, attempt_id=uuid.uuid4(), started_at=STARTED,
            worker=worker, text="ok", data=None, task_id="task-1", now=ENDED,
        )  # fmt: skip


def _attempts(session: Session, step_id: uuid.UUID) -> list[tuple[int, str, AttemptStatus]]:
    rows = session.scalars(select(Attempt).where(Attempt.step_id == step_id)
                           .order_by(Attempt.number))  # fmt: skip
    return [(a.number, a.worker, a.status) for a in rows]


def test_a_last_step_records_its_attempt_and_ends_a_queued_run(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    run_id, (step_id,) = _run(sessions, 1)
    assert _succeed(engine, run_id, step_id, last=True)
    with sessions() as session:
        run, step = session.get_one(Run, run_id), session.get_one(Step, step_id)
        assert (run.status, run.started_at, run.finished_at) == (Status.SUCCEEDED, STARTED, ENDED)
        assert (step.status, step.started_at, step.finished_at) == (
            Status.SUCCEEDED, STARTED, ENDED,
        )  # fmt: skip
        assert step.latency_ms == 3.0
        assert step.result is not None
        assert step.result.text == "ok"
        attempt = session.scalars(select(Attempt).where(Attempt.step_id == step_id)).one()
        assert (attempt.number, attempt.status, attempt.worker, attempt.task_id) == (
            1, AttemptStatus.SUCCEEDED, "w1", "task-1",
        )  # fmt: skip
        assert (attempt.started_at, attempt.finished_at) == (STARTED, ENDED)


def test_a_first_step_of_several_starts_the_run_without_ending_it(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    run_id, (first, second) = _run(sessions, 2)
    assert _succeed(engine, run_id, first, last=False)
    with sessions() as session:
        run = session.get_one(Run, run_id)
        assert (run.status, run.started_at, run.finished_at) == (Status.RUNNING, STARTED, None)
        assert session.get_one(Step, second).status == Status.QUEUED
    assert _succeed(engine, run_id, second, last=True)
    with sessions() as session:
        run = session.get_one(Run, run_id)
        assert (run.status, run.started_at) == (Status.SUCCEEDED, STARTED)


def test_a_step_a_twin_finished_keeps_the_twins_result_and_records_both_attempts(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    run_id, (step_id,) = _run(sessions, 1)
    assert _succeed(engine, run_id, step_id, last=True, worker="first")
    assert not _succeed(engine, run_id, step_id, last=True, worker="second")
    with sessions() as session:
        assert _attempts(session, step_id) == [
            (1, "first", AttemptStatus.SUCCEEDED), (2, "second", AttemptStatus.SUCCEEDED),
        ]  # fmt: skip


def test_a_twin_that_took_the_number_meanwhile_gets_the_next_one(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    """The twin inserts attempt 1 and holds it uncommitted while the statement begins:
    the statement numbers its attempt 1 too, waits for the twin, and inserts nothing;
    the attempt is then numbered again, 2."""
    run_id, (step_id,) = _run(sessions, 1)
    twin = engine.connect()
    try:
        twin_tx = twin.begin()
        twin.execute(
            text("INSERT INTO step_attempts (id, step_id, number, task_id, worker, status, "
                 "started_at) VALUES (:id, :s, 1, 'task-1', 'twin', 'running', now())"),
            {"id": uuid.uuid4(), "s": step_id},
        )  # fmt: skip
        with ThreadPoolExecutor(1) as pool:
            late = pool.submit(_succeed, engine, run_id, step_id, last=True,
                               worker="late")  # fmt: skip
            wait_for_a_lock_wait(engine, "WITH result AS")
            twin_tx.commit()
            assert late.result(timeout=60) is True
    finally:
        twin.close()
    with sessions() as session:
        assert _attempts(session, step_id) == [
            (1, "twin", AttemptStatus.RUNNING), (2, "late", AttemptStatus.SUCCEEDED),
        ]  # fmt: skip
        assert session.get_one(Run, run_id).status == Status.SUCCEEDED
