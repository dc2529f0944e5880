"""Writing runs, steps, attempts and results, safely when a task runs twice.

Every write is keyed: a run by its idempotency key (and a scheduled slot by job and
time), a step by its run and index, a result by its step. Inserts use ON CONFLICT DO
NOTHING, and a finished step or run is never finished again, so a redelivered task or
a second scheduler changes nothing. Each function works inside the caller's
transaction: `with factory.begin() as session: ...`.

A worker records every step through here, so statements are few and cheap: a new
run's row comes back from its INSERT, an attempt's number is computed inside its
INSERT, and the writes of a step's start and finish are built once
(`sparkjobs.store.statements`) and run on the tables, not through the ORM: they do
not update objects the caller's session holds, which a caller refreshes to read.
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import CursorResult, select
from sqlalchemy.orm import Session

from sparkjobs.errors import BadInput, UnknownRun
from sparkjobs.store import statements
from sparkjobs.store.keyed import (
    dialect_insert,
    dialect_name,
    insert_ignoring_conflicts,
    named_params,
    typed_values,
)
from sparkjobs.store.late_start import record_attempt
from sparkjobs.store.models import (
    Attempt,
    AttemptStatus,
    Run,
    RunKind,
    Status,
    Step,
    Trigger,
)

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


def utc_now() -> datetime:
    return datetime.now(UTC)


def slot_key(job: str, scheduled_for: datetime) -> str:
    """The idempotency key of a scheduled slot: the same for every scheduler."""
    return f"schedule:{job}@{_aware(scheduled_for).astimezone(UTC).isoformat()}"


def create_run(
    session: Session,
    *,
    job: str,
    kind: RunKind,
    trigger: Trigger,
    params: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
    scheduled_for: datetime | None = None,
    status: Status = Status.QUEUED,
    rerun_of: uuid.UUID | None = None,
    interactive: bool = False,
    now: datetime | None = None,
) -> tuple[Run, bool]:
    """Insert a run, or get the one that already holds its key or its scheduled slot.

    Args:
        job: the job's name (for ad-hoc submissions, e.g. "speak").
        idempotency_key: default: the slot key for a scheduled run, else a fresh one.
        scheduled_for: the slot a schedule fired for; (job, scheduled_for) is unique.
        status: `queued`, or `skipped` for a slot an overlap policy skipped.
        interactive: someone waits for the run (ignored when the run already exists).

    Returns:
        The run, and True if this call created it (False: another caller had).
    """
    values = run_values(
        job=job, kind=kind, trigger=trigger, params=params, idempotency_key=idempotency_key,
        scheduled_for=scheduled_for, status=status, rerun_of=rerun_of, interactive=interactive,
        now=now,
    )  # fmt: skip
    # One statement when the run is new: INSERT ... ON CONFLICT DO NOTHING RETURNING
    # gives the row back, or nothing when another caller holds its key or slot.
    insert_run = _insert_run(dialect_name(session), tuple(values))
    found = session.scalars(insert_run, named_params(**values)).first()
    if found is not None:
        return found, True
    match = Run.idempotency_key == values["idempotency_key"]
    if values["scheduled_for"] is not None:
        match = match | ((Run.job == job) & (Run.scheduled_for == values["scheduled_for"]))
    found = session.scalars(select(Run).where(match)).first()
    assert found is not None, "a conflicting run was inserted and is gone"
    return found, False


@functools.cache
def _insert_run(dialect: str, columns: tuple[str, ...]) -> Any:
    """INSERT a run unless its key or slot is taken, returning it: built once."""
    table = Run.__table__
    insert_run = dialect_insert(dialect)(Run).values(typed_values(table, columns))  # type: ignore[arg-type]
    return insert_run.on_conflict_do_nothing().returning(Run)


def run_values(
    *,
    job: str,
    kind: RunKind,
    trigger: Trigger,
    params: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
    scheduled_for: datetime | None = None,
    status: Status = Status.QUEUED,
    rerun_of: uuid.UUID | None = None,
    interactive: bool = False,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The row of a new run (a fresh id and key unless given), as `create_run` inserts it."""
    if scheduled_for is not None:
        scheduled_for = _aware(scheduled_for)
    key = idempotency_key or (
        slot_key(job, scheduled_for) if scheduled_for else f"run:{uuid.uuid4()}"
    )
    now = now or utc_now()
    return {
        "id": uuid.uuid4(),
        "job": job,
        "kind": RunKind(kind),
        "trigger": Trigger(trigger),
        "scheduled_for": scheduled_for,
        "idempotency_key": key,
        "status": Status(status),
        "created_at": now,
        "finished_at": now if Status(status).terminal else None,
        "params": params or {},
        "rerun_of": rerun_of,
        "interactive": interactive,
    }


def step_values(
    run_id: uuid.UUID,
    index: int,
    *,
    service: str,
    node: str,
    name: str | None = None,
    spec: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The row of a new step (status queued), as `add_step` inserts it."""
    return {
        "id": uuid.uuid4(),
        "run_id": run_id,
        "index": index,
        "name": name,
        "service": service,
        "node": node,
        "status": Status.QUEUED,
        "queued_at": now or utc_now(),
        "spec": spec,
        "pieces_done": 0,
    }


def add_step(
    session: Session,
    run_id: uuid.UUID,
    index: int,
    *,
    service: str,
    node: str,
    name: str | None = None,
    spec: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> Step:
    """Insert step `index` of a run (status queued), or get it if it exists."""
    values = step_values(run_id, index, service=service, node=node, name=name, spec=spec, now=now)
    insert_ignoring_conflicts(session, Step, values)
    step = session.scalars(select(Step).where(Step.run_id == run_id, Step.index == index)).one()
    return step


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


def finish_run(
    session: Executor,
    run_id: uuid.UUID,
    *,
    status: Status,
    error: str | None = None,
    now: datetime | None = None,
) -> bool:
    """Mark a run finished (or cancelled); the first finish wins.

    Returns:
        True if this call finished the run, False if it was already finished.
    """
    status = Status(status)
    if not status.terminal:
        raise BadInput(f"finish_run needs a final status, not {status.value!r}")
    values = named_params(id=run_id, status=status, finished_at=now or utc_now(), error=error)
    result = session.execute(statements.finish_run(), values)
    return cast(CursorResult[Any], result).rowcount == 1


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise BadInput(f"{moment.isoformat()} has no time zone; the store takes aware times")
    return moment
