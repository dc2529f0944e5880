"""A step's attempt opened in one statement on PostgreSQL (`open_at_once`).

The statement locks the step's row and numbers the attempt from what it saw when it
began: it must write nothing for a finished step or run, nothing before the gate
admits a kind that needs a lease, and hand the start back (None) rather than
number an attempt twice when a twin delivery got there while it waited.
"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from sparkjobs.errors import UnknownRun
from sparkjobs.execution.prologue import open_at_once
from sparkjobs.execution.state import Started, start_step
from sparkjobs.store.direct import transaction
from sparkjobs.store.models import Attempt, AttemptStatus, Run, RunKind, Status, Step, Trigger
from sparkjobs.store.runs import add_step, create_run, finish_run
from tests.support.locks import wait_for_a_lock_wait


@pytest.fixture
def engine(postgres_engine: Engine) -> Engine:
    """The statement is PostgreSQL's: on either leg."""
    return postgres_engine


def _run(sessions: sessionmaker[Session], kind: str, *, wait: str | None = None) -> uuid.UUID:
    with sessions.begin() as session:
        run, _ = create_run(session, job="opening", kind=RunKind.PIPELINE, trigger=Trigger.SUBMIT)
        step = add_step(session, run.id, 0, service="gemma", node="spark1", name=kind,
                        spec={"kind": kind})  # fmt: skip
        if wait is not None:
            step.waiting_for, step.waiting_since = wait, datetime.now(UTC)
        return run.id


def _open(
    engine: Engine, run_id: uuid.UUID, *, admitted: bool = False, worker: str = "w1"
) -> Started | None:
    with transaction(engine, autocommit=True) as tx:
        return open_at_once(tx, run_id, 0, task_id="task-1", worker=worker, admitted=admitted)


Attempts = list[tuple[int, str, AttemptStatus]]


def _state(sessions: sessionmaker[Session], run_id: uuid.UUID) -> tuple[Status, Status, Attempts]:
    with sessions() as session:
        step = session.scalars(select(Step).where(Step.run_id == run_id)).one()
        attempts = [(a.number, a.worker, a.status) for a in step.attempts]
        return session.get_one(Run, run_id).status, step.status, attempts


def test_a_step_that_needs_no_lease_is_started_by_one_statement(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    run_id = _run(sessions, "custom")
    started = _open(engine, run_id)
    assert started is not None
    assert started.attempt_id is not None
    assert (started.status, started.context.kind, started.context.steps) == (
        Status.QUEUED, "custom", 1,
    )  # fmt: skip
    assert _state(sessions, run_id) == (
        Status.RUNNING, Status.RUNNING, [(1, "w1", AttemptStatus.RUNNING)],
    )  # fmt: skip
    with sessions() as session:
        step = session.scalars(select(Step).where(Step.run_id == run_id)).one()
        assert step.started_at == started.started_at
        assert session.get_one(Attempt, started.attempt_id).started_at == started.started_at
    again = _open(engine, run_id, worker="w2")  # a redelivery: the next attempt
    assert again is not None
    assert again.status == Status.RUNNING
    assert _state(sessions, run_id)[2] == [
        (1, "w1", AttemptStatus.RUNNING), (2, "w2", AttemptStatus.RUNNING),
    ]  # fmt: skip


def test_a_kind_that_needs_a_lease_is_not_started_until_admitted(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    run_id = _run(sessions, "chat", wait="lease: all 1 slots of gemma are in use")
    held = _open(engine, run_id)
    assert held is not None
    assert (held.gate_first, held.attempt_id, held.standing.kind) == (True, None, "chat")
    assert held.standing.waiting_for is not None
    assert _state(sessions, run_id) == (Status.QUEUED, Status.QUEUED, [])
    admitted = _open(engine, run_id, admitted=True)
    assert admitted is not None
    assert admitted.attempt_id is not None
    assert _state(sessions, run_id)[2] == [(1, "w1", AttemptStatus.RUNNING)]
    with sessions() as session:
        step = session.scalars(select(Step).where(Step.run_id == run_id)).one()
        assert (step.waiting_for, step.waiting_since) == (None, None)


@pytest.mark.parametrize("finished", ["step", "run"])
def test_a_finished_step_or_run_is_not_started(
    engine: Engine, sessions: sessionmaker[Session], finished: str
) -> None:
    run_id = _run(sessions, "custom")
    with sessions.begin() as session:
        if finished == "run":
            finish_run(session, run_id, status=Status.CANCELLED)
        else:
            session.execute(update(Step).where(Step.run_id == run_id)
                            .values(status=Status.SUCCEEDED))  # fmt: skip
    started = _open(engine, run_id, admitted=True)
    assert started is not None
    assert started.attempt_id is None
    assert not started.gate_first
    expected = Status.SUCCEEDED if finished == "step" else Status.QUEUED
    assert started.status == expected
    assert _state(sessions, run_id)[2] == []


def test_an_unknown_step_is_named(engine: Engine) -> None:
    missing = uuid.uuid4()
    with pytest.raises(UnknownRun, match=str(missing)):
        _open(engine, missing)


def test_a_twin_that_numbered_the_attempt_first_hands_the_start_back(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    """The twin holds the step's lock while this statement begins: the statement waits,
    then finds its attempt number taken. Nothing of it is written; the start in a
    transaction then numbers the next attempt."""
    run_id = _run(sessions, "custom")
    twin = engine.connect()
    try:
        twin_tx = twin.begin()
        step_id = twin.execute(
            text("SELECT id FROM steps WHERE run_id = :r FOR UPDATE"), {"r": run_id}
        ).scalar_one()
        with ThreadPoolExecutor(1) as pool:
            opening = pool.submit(_open, engine, run_id, worker="late")
            wait_for_a_lock_wait(engine, "WITH target AS")
            twin.execute(
                text("INSERT INTO step_attempts (id, step_id, number, task_id, worker, status, "
                     "started_at) VALUES (:id, :s, 1, 'task-1', 'twin', 'running', now())"),
                {"id": uuid.uuid4(), "s": step_id},
            )  # fmt: skip
            twin.execute(text("UPDATE steps SET status = 'running' WHERE id = :s"), {"s": step_id})
            twin_tx.commit()
            assert opening.result(timeout=60) is None
    finally:
        twin.close()
    assert _state(sessions, run_id) == (
        Status.QUEUED, Status.RUNNING, [(1, "twin", AttemptStatus.RUNNING)],
    )  # fmt: skip
    with transaction(engine) as tx:
        started = start_step(tx, run_id, 0, task_id="task-1", worker="late")
    assert started.attempt_id is not None
    assert _state(sessions, run_id)[2] == [
        (1, "twin", AttemptStatus.RUNNING), (2, "late", AttemptStatus.RUNNING),
    ]  # fmt: skip
