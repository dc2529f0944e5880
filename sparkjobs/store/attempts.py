"""A step's attempts and its outcome: opened, finished, its result recorded, and the
step finished, each safely when a task runs twice (a finished step is never finished
again). Like `runs`, each function works inside the caller's transaction, and the hot
writes are built once (`statements`) and run on the tables, not through the ORM."""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import CursorResult, select
from sqlalchemy.orm import Session

from sparkjobs.errors import BadInput, UnknownRun
from sparkjobs.store import statements
from sparkjobs.store.keyed import (
    named_params,
)
from sparkjobs.store.late_start import record_attempt
from sparkjobs.store.models import (
    Attempt,
    AttemptStatus,
    Run,
    Status,
    Step,
)
from sparkjobs.store.runs import utc_now

if TYPE_CHECKING:
    from sparkjobs.store.direct import Executor


@dataclass(frozen=True)
class StepTimings:
    """What a model-server client measured for one step; None where it does not apply."""

    ttft_ms: float | None = None  # time to first token, or to first audio
    tokens_in: int | None = None
    tokens_out: int | None = None
    tokens_per_s: float | None = None
    audio_s: float | None = None
    rtf: float | None = None  # real-time factor: audio seconds / wall seconds (>1: faster)


def start_attempt(
    session: Session,
    step_id: uuid.UUID,
    *,
    task_id: str,
    worker: str,
    now: datetime | None = None,
) -> Attempt | None:
    """Record that a worker starts executing a step, and mark the step and run running.

    Returns:
        The new attempt, or None when there is nothing to do: the step is already
        finished (a redelivery after success) or its run was cancelled.
    """
    # Row lock on PostgreSQL (SQLite's write lock is already held): two deliveries of
    # one task number their attempts one after the other. Lock order is always step,
    # then run, so writers never wait on each other in a cycle.
    row = session.execute(
        select(Step.status, Step.run_id, Step.started_at, Run.status.label("run_status"))
        .join(Run, Run.id == Step.run_id)
        .where(Step.id == step_id)
        .with_for_update(of=Step)
    ).first()
    if row is None:
        raise UnknownRun(f"no step {step_id} in the store")
    if row.status.terminal or row.run_status.terminal:
        return None
    attempt_id = open_attempt(
        session, step_id, row.run_id, task_id=task_id, worker=worker, now=now or utc_now(),
        step_started_at=row.started_at, run_queued=row.run_status == Status.QUEUED,
    )  # fmt: skip
    return session.get_one(Attempt, attempt_id)


def open_attempt(
    session: Executor,
    step_id: uuid.UUID,
    run_id: uuid.UUID,
    *,
    task_id: str,
    worker: str,
    now: datetime,
    step_started_at: datetime | None,
    run_queued: bool,
) -> uuid.UUID:
    """Insert the next attempt of a step and mark the step (and a queued run) running.

    The caller holds the step's row lock and has checked that neither the step nor
    its run is finished (`start_attempt`, `sparkjobs.execution.state.start_step`).
    Two or three statements: the attempt's number is computed in its INSERT.

    Returns:
        The attempt's id.
    """
    attempt_id = uuid.uuid4()
    values = named_params(
        id=attempt_id, step_id=step_id, task_id=task_id, worker=worker, started_at=now
    )
    if session.get_bind().dialect.name == "postgresql":  # all three in one statement
        values |= named_params(run_id=run_id, step_started_at=step_started_at or now)
        session.execute(statements.start_attempt_pg(), values)
        return attempt_id
    session.execute(statements.insert_attempt(), values)
    started = named_params(id=step_id, started_at=step_started_at or now)
    session.execute(statements.start_step(), started)
    if run_queued:
        session.execute(statements.start_run(), named_params(id=run_id, started_at=now))
    return attempt_id


def finish_attempt(
    session: Executor,
    attempt_id: uuid.UUID,
    *,
    error: str | None = None,
    now: datetime | None = None,
) -> None:
    """Close an attempt: succeeded without `error`, failed with it. Repeats are no-ops."""
    status = AttemptStatus.FAILED if error else AttemptStatus.SUCCEEDED
    values = named_params(id=attempt_id, finished_at=now or utc_now(), status=status, error=error)
    session.execute(statements.finish_attempt(), values)


def record_result(
    session: Executor,
    step_id: uuid.UUID,
    *,
    text: str | None = None,
    data: dict[str, Any] | None = None,
    task_id: str | None = None,
    now: datetime | None = None,
) -> bool:
    """Store a step's text or JSON output, exactly once.

    Returns:
        True if this call stored it; False if the step already had a result (the
        task ran twice), in which case the first result stays.
    """
    if text is None and data is None:
        raise BadInput(f"record_result for step {step_id} got neither text nor data")
    values = named_params(
        step_id=step_id, text=text, data=data, task_id=task_id, created_at=now or utc_now()
    )
    insert = statements.insert_result(session.get_bind().dialect.name)
    return cast(CursorResult[Any], session.execute(insert, values)).rowcount == 1


def finish_step(
    session: Executor,
    step_id: uuid.UUID,
    *,
    status: Status,
    timings: StepTimings | None = None,
    error: str | None = None,
    attempt_id: uuid.UUID | None = None,
    started_at: datetime | None = None,
    now: datetime | None = None,
) -> bool:
    """Mark a step finished with its timings; the first finish wins.

    Args:
        status: a terminal status (succeeded, failed, cancelled, skipped).
        attempt_id: the attempt that ends here; it is closed too, and its duration
            becomes the step's `latency_ms`.
        started_at: when that attempt started, if the caller knows (saves a read).

    Returns:
        True if this call finished the step, False if it was already finished.
    """
    status = Status(status)
    if not status.terminal:
        raise BadInput(f"finish_step needs a final status, not {status.value!r}")
    now = now or utc_now()
    started = started_at
    if attempt_id is not None:
        finish_attempt(session, attempt_id, error=error, now=now)
        if started is None:
            started = session.scalar(select(Attempt.started_at).where(Attempt.id == attempt_id))
    started = started or session.scalar(select(Step.started_at).where(Step.id == step_id))
    latency_ms = (now - started).total_seconds() * 1000 if started else None
    values = named_params(
        id=step_id, status=status, finished_at=now, error=error, latency_ms=latency_ms,
        **asdict(timings or StepTimings()),
    )  # fmt: skip
    result = session.execute(statements.finish_step(), values)
    return cast(CursorResult[Any], result).rowcount == 1


def succeed_at_once(
    session: Executor,
    step_id: uuid.UUID,
    run_id: uuid.UUID,
    *,
    last: bool,
    attempt_id: uuid.UUID,
    started_at: datetime,
    text: str | None,
    data: dict[str, Any] | None,
    task_id: str | None,
    timings: StepTimings | None = None,
    now: datetime | None = None,
    worker: str | None = None,
) -> bool:
    """On PostgreSQL, in one statement: `record_result`, then `finish_step` (succeeded,
    closing the attempt) and, if `last` and the step is finished here, `finish_run`.

    `worker`: the attempt's start was deferred (`sparkjobs.execution.deferred_start`)
    and is written here too, as `worker`'s: the attempt is inserted closed, and the step
    and a queued run get their start (`statements.succeed_step_pg(with_start=True)`).

    Returns:
        True if this call finished the step (False: a twin delivery already had).
    """
    now = now or utc_now()
    latency_ms = (now - started_at).total_seconds() * 1000
    values = named_params(
        step_id=step_id, text=text, data=data, task_id=task_id, finished_at=now,
        attempt_id=attempt_id, run_id=run_id, last=last, latency_ms=latency_ms,
        **asdict(timings or StepTimings()),
    )  # fmt: skip
    if worker is None:
        return bool(session.scalar(statements.succeed_step_pg(), values))
    values |= named_params(worker=worker, started_at=started_at)
    row: Any = session.execute(statements.succeed_step_pg(with_start=True), values).first()
    if not row.recorded:  # a twin numbered its attempt as this one while it ran
        record_attempt(session, step_id, attempt_id, task_id=str(task_id), worker=worker,
                       started_at=started_at, finished_at=now)  # fmt: skip
    return bool(row.done)
