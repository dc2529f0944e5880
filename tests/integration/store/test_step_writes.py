"""A step task's own writes (`start_step`, `succeed_step`): few statements, same guarantees.

On PostgreSQL the start and the success each run as one statement; on SQLite as several;
in a Session or on the driver (as the worker runs them). Either way a task delivered
twice changes the store once, a finished or cancelled run starts nothing, and a step the
gate must admit is not started before it is.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from sparkjobs.execution.state import next_to_publish, start_step, succeed_step
from sparkjobs.store.direct import Executor, transaction
from sparkjobs.store.engine import engine_of
from sparkjobs.store.models import Attempt, AttemptStatus, Run, RunKind, Status, Step, Trigger
from sparkjobs.store.runs import add_step, create_run, finish_run
from sparkjobs.store.statements import STEP_OUTCOME

Begin = Callable[[], AbstractContextManager[Executor]]


@pytest.fixture(params=["session", "driver"])
def begin(request: pytest.FixtureRequest, sessions: sessionmaker[Session]) -> Begin:
    """A transaction for the step functions: a Session's, or one on the driver
    (`sparkjobs.store.direct`, as the worker runs them): the same outcome either way."""
    if request.param == "session":
        return sessions.begin
    engine = engine_of(sessions)
    return lambda: transaction(engine)


def _run(sessions: sessionmaker[Session], kinds: list[str]) -> uuid.UUID:
    with sessions.begin() as session:
        run, _ = create_run(session, job="twice", kind=RunKind.PIPELINE, trigger=Trigger.SUBMIT)
        for index, kind in enumerate(kinds):
            add_step(session, run.id, index, service="gemma", node="spark1", name=kind,
                     spec={"kind": kind})  # fmt: skip
        return run.id


def test_two_deliveries_of_a_step_record_one_result_and_finish_the_run_once(
    sessions: sessionmaker[Session], begin: Begin
) -> None:
    run_id = _run(sessions, ["custom"])
    barrier = threading.Barrier(2, timeout=30)

    def deliver(name: str) -> bool:
        with begin() as session:
            started = start_step(session, run_id, 0, task_id="task-1", worker=name)
        assert started.attempt_id is not None
        barrier.wait()  # both deliveries now run the step
        with begin() as session:
            return succeed_step(session, started.context, attempt_id=started.attempt_id,
                                text=f"from {name}", task_id="task-1",
                                started_at=started.started_at)  # fmt: skip

    with ThreadPoolExecutor(2) as pool:
        done = list(pool.map(deliver, ["w1", "w2"], timeout=60))
    assert sorted(done) == [False, True]
    with sessions() as session:
        step = session.scalars(select(Step).where(Step.run_id == run_id)).one()
        assert step.status == Status.SUCCEEDED
        assert step.result is not None
        assert step.result.text in ("from w1", "from w2")
        assert step.latency_ms is not None
        assert step.latency_ms >= 0
        attempts = sorted((a.number, a.status, a.finished_at is not None) for a in step.attempts)
        assert attempts == [(1, AttemptStatus.SUCCEEDED, True), (2, AttemptStatus.SUCCEEDED, True)]
        run = session.get_one(Run, run_id)
        assert (run.status, run.started_at is not None, run.finished_at is not None) == (
            Status.SUCCEEDED, True, True,
        )  # fmt: skip


def test_a_middle_step_moves_the_run_on_and_the_next_step_sees_its_output(
    sessions: sessionmaker[Session], begin: Begin
) -> None:
    run_id = _run(sessions, ["custom", "custom"])
    with begin() as session:
        first = start_step(session, run_id, 0, task_id="t0", worker="w")
    assert (first.context.job, first.context.steps, first.context.outputs) == ("twice", 2, ())
    with begin() as session:
        assert succeed_step(session, first.context, attempt_id=first.attempt_id,
                            data={"n": 1}, started_at=first.started_at)  # fmt: skip
        follow = next_to_publish(session, run_id, 0, steps=first.context.steps)
        assert follow is not None
        assert follow.index == 1
    with sessions() as session:
        assert session.get_one(Run, run_id).status == Status.RUNNING  # one step to go
    with begin() as session:
        second = start_step(session, run_id, 1, task_id="t1", worker="w")
    assert second.context.previous_data == {"n": 1}
    with begin() as session:
        assert succeed_step(session, second.context, attempt_id=second.attempt_id,
                            text="end", started_at=second.started_at)  # fmt: skip
        assert next_to_publish(session, run_id, 1, steps=second.context.steps) is None
    with sessions() as session:
        assert session.get_one(Run, run_id).status == Status.SUCCEEDED


def test_a_delivery_after_success_or_cancel_starts_no_attempt(
    sessions: sessionmaker[Session], begin: Begin
) -> None:
    done_run, cancelled_run = _run(sessions, ["custom"]), _run(sessions, ["custom"])
    with begin() as session:
        started = start_step(session, done_run, 0, task_id="t", worker="w1")
    with begin() as session:
        succeed_step(session, started.context, attempt_id=started.attempt_id, text="hello",
                     started_at=started.started_at)  # fmt: skip
        finish_run(session, cancelled_run, status=Status.CANCELLED)
    with begin() as session:
        again = start_step(session, done_run, 0, task_id="t", worker="w2")
        cancelled = start_step(session, cancelled_run, 0, task_id="t", worker="w2")
    assert (again.attempt_id, again.status) == (None, Status.SUCCEEDED)
    assert cancelled.attempt_id is None
    with sessions() as session:
        assert len(session.scalars(select(Attempt)).all()) == 1


def test_a_step_the_gate_admits_is_not_started_before_it(
    sessions: sessionmaker[Session], begin: Begin
) -> None:
    run_id = _run(sessions, ["chat"])
    with begin() as session:
        waiting = start_step(session, run_id, 0, task_id="t", worker="w", gate_first=True)
    assert (waiting.gate_first, waiting.attempt_id, waiting.standing.kind) == (True, None, "chat")
    with sessions() as session:
        step = session.scalars(select(Step).where(Step.run_id == run_id)).one()
        assert (step.status, step.attempts) == (Status.QUEUED, [])
    with begin() as session:
        admitted = start_step(session, run_id, 0, task_id="t", worker="w")
    assert admitted.attempt_id is not None
    with sessions() as session:
        assert session.get_one(Run, run_id).status == Status.RUNNING


def test_the_outcome_columns_are_the_steps_timings() -> None:
    assert set(STEP_OUTCOME) <= set(Step.__table__.c.keys())
