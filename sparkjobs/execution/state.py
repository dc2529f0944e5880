"""The SQL of a step's outcome: started, succeeded or failed, and what comes next
(its context: `context`; its pieces: `piece_state`).

Every write is keyed and guarded, so a task that runs twice changes nothing the
second time: a finished step stays finished, a finished piece is counted once.
Functions take the caller's session (`with sessions.begin() as session:`).
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Table, select, update
from sqlalchemy.orm import Session

from sparkjobs.execution.context import StepContext, context_of, step_row
from sparkjobs.store.attempts import finish_step, open_attempt
from sparkjobs.store.keyed import typed_param
from sparkjobs.store.models import (
    Run,
    Status,
    Step,
)
from sparkjobs.store.runs import finish_run, utc_now

if TYPE_CHECKING:
    from sparkjobs.dispatch.standing import Standing
    from sparkjobs.execution.deferred_start import DeferredStart
    from sparkjobs.store.direct import Executor


@dataclass(frozen=True)
class Started:
    """What the prologue of a step task found and did (`start_step`)."""

    context: StepContext
    standing: Standing  # what admission needs, read in the same query
    status: Status  # the step's status as read, before this attempt
    attempt_id: uuid.UUID | None  # None: no attempt (finished, run ended, or `gate_first`)
    started_at: datetime | None  # when the attempt started
    gate_first: bool = False  # not started: the gate must admit the task first
    deferred: DeferredStart | None = None  # the attempt's start, if not written yet

    def recorded(self) -> uuid.UUID | None:
        """The attempt's id once its start is in the store: written now if it was
        deferred; None if there is no attempt to write to (`DeferredStart.written`)."""
        return self.attempt_id if self.deferred is None else self.deferred.written()


def read_step(session: Executor, run_id: uuid.UUID, index: int) -> tuple[Started, bool]:
    """Read step `index` of a run as `start_step` does, without its lock or its writes.

    Returns:
        The step as a `Started` without an attempt (`gate_first` for a kind the gate
        admits), and whether it may start: neither it nor its run is finished.

    Raises:
        UnknownRun: the run or the step is not in the store.
    """
    from sparkjobs.dispatch.standing import standing_of

    row = step_row(session, run_id, index)
    standing = standing_of(row)
    startable = not (row.status.terminal or row.run_status.terminal)
    context = context_of(session, run_id, index, row)
    gate_first = startable and standing.gated()
    return Started(context, standing, row.status, None, None, gate_first=gate_first), startable


def start_step(
    session: Executor,
    run_id: uuid.UUID,
    index: int,
    *,
    task_id: str,
    worker: str,
    gate_first: bool = False,
    admit_now: Callable[[Standing], bool] | None = None,
    now: datetime | None = None,
) -> Started:
    """Read step `index` of a run and open its attempt: a step task's prologue.

    One query reads the step (its row locked), its run, the step count and what
    admission needs; then the attempt is inserted and the step (and a queued run)
    marked running. Nothing is written when the step or its run is finished, nor,
    with `gate_first`, when the step's kind needs the gate's admission before its
    attempt (`Started.gate_first`): the caller admits, then calls again.

    Args:
        admit_now: with `gate_first`, one try of the gate that takes no wait and
            writes no SQL (`sparkjobs.dispatch.admission.admit_at_once`): when it
            answers True (a lease is held), the attempt opens in this transaction,
            and the step's wait is cleared, with no second read.

    Raises:
        UnknownRun: the run or the step is not in the store.
    """
    from sparkjobs.dispatch.standing import standing_of

    # Row lock on PostgreSQL (SQLite's write lock is already held): two deliveries of
    # one task number their attempts one after the other (as `start_attempt` does).
    row = step_row(session, run_id, index, lock=True)
    standing = standing_of(row)
    context = context_of(session, run_id, index, row)
    if row.status.terminal or row.run_status.terminal:
        return Started(context, standing, row.status, None, None)
    if gate_first and standing.gated():
        if admit_now is None or not admit_now(standing):
            return Started(context, standing, row.status, None, None, gate_first=True)
        if standing.waiting_for is not None:
            from sparkjobs.dispatch.waits import clear_wait

            clear_wait(session, row.id)
    now = now or utc_now()
    attempt_id = open_attempt(
        session, row.id, run_id, task_id=task_id, worker=worker, now=now,
        step_started_at=row.started_at, run_queued=row.run_status == Status.QUEUED,
    )  # fmt: skip
    return Started(context, standing, row.status, attempt_id, now)


def succeed_step(
    session: Executor,
    context: StepContext,
    *,
    attempt_id: uuid.UUID | None,
    text: str | None = None,
    data: dict[str, Any] | None = None,
    task_id: str | None = None,
    started_at: datetime | None = None,
    worker: str | None = None,
    **finish: Any,
) -> bool:
    """Record a step's output and finish it; the run too when this was its last step.

    `started_at`: when the attempt began (`Started.started_at`), which saves a read.
    `worker`: the attempt's start was deferred and is written here, by `worker`, with
    the success (in one statement: `succeeds_in_one_statement` must hold).

    Returns:
        True if this call finished the step (False: a twin delivery already had).
    """
    from sparkjobs.store.attempts import record_result, succeed_at_once

    last = context.index == context.steps - 1
    dialect = session.get_bind().dialect.name
    if (
        attempt_id is not None
        and started_at is not None
        and succeeds_in_one_statement(dialect, text, data, finish)
    ):
        return succeed_at_once(
            session, context.step_id, context.run_id, last=last, attempt_id=attempt_id,
            started_at=started_at, text=text, data=data, task_id=task_id, worker=worker,
            **finish,
        )  # fmt: skip
    if worker is not None:
        raise ValueError("a deferred start is written with a success of one statement")
    if text is not None or data is not None:
        record_result(session, context.step_id, text=text, data=data, task_id=task_id)
    done = finish_step(
        session, context.step_id, status=Status.SUCCEEDED, attempt_id=attempt_id,
        started_at=started_at, **finish,
    )  # fmt: skip
    if done and last:
        finish_run(session, context.run_id, status=Status.SUCCEEDED)
    return done


def succeeds_in_one_statement(
    dialect: str, text: str | None, data: dict[str, Any] | None, finish: Mapping[str, Any]
) -> bool:
    """Whether `succeed_step`, given its attempt and when it started, writes all of a
    success in one statement (which then needs no transaction around it:
    `sparkjobs.store.direct.transaction(autocommit=True)`)."""
    return (
        dialect == "postgresql"
        and (text is not None or data is not None)
        and set(finish) <= {"timings", "now"}
    )


# The error of a step skipped because an earlier one failed.
NOT_RUN = "not run: an earlier step of the run failed"
# The error of a step that had started on an earlier one's output as it streamed.
NOT_FINISHED = "not finished: the step it was streamed from failed"


def fail_step(
    session: Session,
    run_id: uuid.UUID,
    step_id: uuid.UUID,
    error: str,
    *,
    attempt_id: uuid.UUID | None = None,
) -> None:
    """Fail a step and its run with the same error; the run's steps that never started
    are skipped (they never run, and no longer count as unfinished)."""
    now = utc_now()
    finish_step(session, step_id, status=Status.FAILED, error=error, attempt_id=attempt_id,
                now=now)  # fmt: skip
    session.execute(
        update(Step)
        .where(Step.run_id == run_id, Step.id != step_id, Step.status == Status.QUEUED)
        .values(status=Status.SKIPPED, finished_at=now, error=NOT_RUN)
    )
    # A speak step a chat streamed into (`sparkjobs.execution.handoff`) runs beside it.
    session.execute(
        update(Step)
        .where(Step.run_id == run_id, Step.id != step_id, Step.status == Status.RUNNING)
        .values(status=Status.FAILED, finished_at=now, error=NOT_FINISHED)
    )
    finish_run(session, run_id, status=Status.FAILED, error=error, now=now)


@dataclass(frozen=True)
class NextStep:
    """The step to publish after another (`next_to_publish`)."""

    index: int
    service: str
    name: str | None


def next_to_publish(
    session: Executor,
    run_id: uuid.UUID,
    index: int,
    *,
    steps: int | None = None,
    started_too: bool = False,
) -> NextStep | None:
    """The step after `index` if the run goes on and it has not started yet.

    A redelivered task whose step already succeeded calls this too: if the worker
    died between recording the step and publishing the next, the run moves on.
    `steps`: the run's step count, if known: after the last step nothing is read.
    `started_too`: a running next step too (a speak step this chat streamed into:
    its own task then cuts the whole reply and finishes what the stream began).
    """
    if steps is not None and index + 1 >= steps:
        return None
    found = session.execute(_next_query(), {"p_run_id": run_id, "p_index": index + 1}).first()
    if found is None:
        return None
    following, service, name, status, run_status = found
    if run_status.terminal or status not in (
        (Status.QUEUED, Status.RUNNING) if started_too else (Status.QUEUED,)
    ):
        return None
    return NextStep(following, service, name)


@functools.cache
def _next_query() -> Any:
    """Step `p_index` of run `p_run_id`: where it runs, its status and its run's."""
    steps, runs = cast(Table, Step.__table__), Run.__table__
    return (
        select(steps.c.index, steps.c.service, steps.c.name, steps.c.status,
               runs.c.status.label("run_status"))
        .join(runs, runs.c.id == steps.c.run_id)
        .where(steps.c.run_id == typed_param(steps, "run_id"),
               steps.c.index == typed_param(steps, "index"))
    )  # fmt: skip


def run_ended(session: Session, run_id: uuid.UUID) -> bool:
    """Whether the run is finished (failed or cancelled, say): the checkpoint that work
    not yet sent to a model server asks, since a revoke cannot stop a running thread."""
    status = session.scalar(select(Run.status).where(Run.id == run_id))
    return status is None or status.terminal
