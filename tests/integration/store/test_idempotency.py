"""Writes are keyed: a task that runs twice, or a slot fired twice, changes the store once.

The concurrent tests use real threads, each with its own connection, against the real
database; a barrier lines them up so that their writes truly overlap.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TypeVar

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from sparkjobs.store.attempts import StepTimings, finish_step, record_result, start_attempt
from sparkjobs.store.models import Attempt, Result, Run, RunKind, Status, Step, Trigger
from sparkjobs.store.runs import add_step, create_run, finish_run

T = TypeVar("T")
SLOT = datetime(2026, 3, 2, 7, 0, tzinfo=UTC)


def _together(count: int, work: Callable[[threading.Barrier], T]) -> list[T]:
    """Run `work` in `count` threads at once; return their results (re-raising errors)."""
    barrier = threading.Barrier(count, timeout=30)
    with ThreadPoolExecutor(count) as pool:
        futures = [pool.submit(work, barrier) for _ in range(count)]
        return [future.result(timeout=60) for future in futures]


def _queued_step(sessions: sessionmaker[Session]) -> tuple[uuid.UUID, uuid.UUID]:
    with sessions.begin() as session:
        run, _ = create_run(session, job="speak", kind=RunKind.SPEAK, trigger=Trigger.SUBMIT)
        step = add_step(session, run.id, 0, service="orpheus", node="spark2")
        return run.id, step.id


def _count(sessions: sessionmaker[Session], model: type[Run | Step | Result | Attempt]) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def test_second_scheduler_firing_the_same_slot_gets_the_existing_run(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session:
        first, created_first = create_run(
            session,
            job="briefing",
            kind=RunKind.PIPELINE,
            trigger=Trigger.SCHEDULE,
            scheduled_for=SLOT,
        )
    with sessions.begin() as session:
        second, created_second = create_run(
            session,
            job="briefing",
            kind=RunKind.PIPELINE,
            trigger=Trigger.SCHEDULE,
            scheduled_for=SLOT,
        )
    assert (created_first, created_second) == (True, False)
    assert second.id == first.id


def test_a_slot_fired_by_many_schedulers_at_once_creates_one_run(
    sessions: sessionmaker[Session],
) -> None:
    def fire(barrier: threading.Barrier) -> tuple[uuid.UUID, bool]:
        with sessions.begin() as session:
            barrier.wait()
            run, created = create_run(
                session,
                job="briefing",
                kind=RunKind.PIPELINE,
                trigger=Trigger.SCHEDULE,
                scheduled_for=SLOT,
                params={"city": "Lyon"},
            )
            return run.id, created

    outcomes = _together(6, fire)
    assert len({run_id for run_id, _ in outcomes}) == 1
    assert sum(created for _, created in outcomes) == 1
    assert _count(sessions, Run) == 1


def test_a_slot_keeps_one_run_even_under_a_different_idempotency_key(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session:
        first, _ = create_run(
            session,
            job="briefing",
            kind=RunKind.CHAT,
            trigger=Trigger.SCHEDULE,
            scheduled_for=SLOT,
        )
        second, created = create_run(
            session,
            job="briefing",
            kind=RunKind.CHAT,
            trigger=Trigger.SCHEDULE,
            scheduled_for=SLOT,
            idempotency_key="other-key",
        )
    assert not created
    assert second.id == first.id


def test_submissions_without_a_key_are_separate_runs(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        one, _ = create_run(session, job="speak", kind=RunKind.SPEAK, trigger=Trigger.SUBMIT)
        two, _ = create_run(session, job="speak", kind=RunKind.SPEAK, trigger=Trigger.SUBMIT)
    assert one.id != two.id


def test_a_redelivered_task_records_its_result_once(sessions: sessionmaker[Session]) -> None:
    run_id, step_id = _queued_step(sessions)

    def execute(barrier: threading.Barrier) -> bool:
        with sessions.begin() as session:
            attempt = start_attempt(session, step_id, task_id="task-1", worker="w@spark2")
        barrier.wait()  # both deliveries are now running the same task
        with sessions.begin() as session:
            stored = record_result(session, step_id, text=f"from {threading.get_ident()}")
            finish_step(
                session,
                step_id,
                status=Status.SUCCEEDED,
                attempt_id=attempt.id if attempt else None,
                timings=StepTimings(ttft_ms=12.0),
            )
            finish_run(session, run_id, status=Status.SUCCEEDED)
            return stored

    stored = _together(2, execute)
    assert sorted(stored) == [False, True]
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Result)) == 1
        attempts = session.scalars(select(Attempt).where(Attempt.step_id == step_id)).all()
        assert sorted(attempt.number for attempt in attempts) == [1, 2]
        step = session.get_one(Step, step_id)
        assert step.status == Status.SUCCEEDED
        assert step.ttft_ms == 12.0
        assert session.get_one(Run, run_id).status == Status.SUCCEEDED


def test_a_delivery_after_the_step_finished_gets_nothing_to_do(
    sessions: sessionmaker[Session],
) -> None:
    _, step_id = _queued_step(sessions)
    with sessions.begin() as session:
        attempt = start_attempt(session, step_id, task_id="t", worker="w1")
        assert attempt is not None
        record_result(session, step_id, text="hello")
        finish_step(session, step_id, status=Status.SUCCEEDED, attempt_id=attempt.id)
    with sessions.begin() as session:
        assert start_attempt(session, step_id, task_id="t", worker="w2") is None
        assert not finish_step(session, step_id, status=Status.FAILED, error="late")
    with sessions() as session:
        step = session.get_one(Step, step_id)
        assert (step.status, step.error) == (Status.SUCCEEDED, None)
        assert step.result is not None
        assert step.result.text == "hello"


def test_a_cancelled_run_starts_no_attempt(sessions: sessionmaker[Session]) -> None:
    run_id, step_id = _queued_step(sessions)
    with sessions.begin() as session:
        assert finish_run(session, run_id, status=Status.CANCELLED)
    with sessions.begin() as session:
        assert start_attempt(session, step_id, task_id="t", worker="w") is None


def test_two_nodes_writing_at_once_lose_no_rows(sessions: sessionmaker[Session]) -> None:
    # Pipelines whose step 0 runs on spark1 and step 1 on spark2, written by both
    # "nodes" in parallel: the same run rows, steps, attempts and results, interleaved.
    runs = 15
    with sessions.begin() as session:
        ids = []
        for number in range(runs):
            run, _ = create_run(
                session, job=f"pipe-{number}", kind=RunKind.PIPELINE, trigger=Trigger.API
            )
            ids.append(run.id)

    def node(index: int) -> Callable[[threading.Barrier], int]:
        def work(barrier: threading.Barrier) -> int:
            barrier.wait()
            for run_id in ids:
                with sessions.begin() as session:
                    step = add_step(
                        session, run_id, index, service=f"svc{index}", node=f"spark{index + 1}"
                    )
                with sessions.begin() as session:
                    attempt = start_attempt(session, step.id, task_id=str(step.id), worker="w")
                    assert attempt is not None
                with sessions.begin() as session:
                    record_result(session, step.id, data={"index": index})
                    finish_step(session, step.id, status=Status.SUCCEEDED, attempt_id=attempt.id)
            return index

        return work

    barrier = threading.Barrier(2, timeout=30)
    with ThreadPoolExecutor(2) as pool:
        done = [pool.submit(node(index), barrier) for index in (0, 1)]
        assert sorted(future.result(timeout=60) for future in done) == [0, 1]
    assert _count(sessions, Step) == 2 * runs
    assert _count(sessions, Result) == 2 * runs
    assert _count(sessions, Attempt) == 2 * runs
    with sessions() as session:
        # Both nodes moved every run from queued to running; none lost the other's write.
        assert set(session.scalars(select(Run.status))) == {Status.RUNNING}
        assert set(session.scalars(select(Step.status))) == {Status.SUCCEEDED}
