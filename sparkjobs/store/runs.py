"""Writing runs, steps, attempts and results, safely when a task runs twice.

Every write is keyed: a run by its idempotency key (and a scheduled slot by job and
time), a step by its run and index, a result by its step. Inserts use ON CONFLICT DO
NOTHING, and a finished step or run is never finished again, so a redelivered task or
a second scheduler changes nothing. Each function works inside the caller's
transaction: `with factory.begin() as session: ...`.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.orm import Session

from sparkjobs.errors import BadInput, UnknownRun
from sparkjobs.store.engine import insert_ignoring_conflicts
from sparkjobs.store.models import (
    TERMINAL,
    Attempt,
    AttemptStatus,
    Result,
    Run,
    RunKind,
    Status,
    Step,
    Trigger,
)


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
    now: datetime | None = None,
) -> tuple[Run, bool]:
    """Insert a run, or get the one that already holds its key or its scheduled slot.

    Args:
        job: the job's name (for ad-hoc submissions, e.g. "speak").
        idempotency_key: default: the slot key for a scheduled run, else a fresh one.
        scheduled_for: the slot a schedule fired for; (job, scheduled_for) is unique.
        status: `queued`, or `skipped` for a slot an overlap policy skipped.

    Returns:
        The run, and True if this call created it (False: another caller had).
    """
    if scheduled_for is not None:
        scheduled_for = _aware(scheduled_for)
    key = idempotency_key or (
        slot_key(job, scheduled_for) if scheduled_for else f"run:{uuid.uuid4()}"
    )
    now = now or utc_now()
    run_id = uuid.uuid4()
    values = {
        "id": run_id,
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
    }
    created = insert_ignoring_conflicts(session, Run, values)
    match = Run.id == run_id
    if not created:
        match = Run.idempotency_key == key
        if scheduled_for is not None:
            match = match | ((Run.job == job) & (Run.scheduled_for == scheduled_for))
    found = session.scalars(select(Run).where(match)).first()
    assert found is not None, "a conflicting run was inserted and is gone"
    return found, created


def add_step(
    session: Session,
    run_id: uuid.UUID,
    index: int,
    *,
    service: str,
    node: str,
    name: str | None = None,
    now: datetime | None = None,
) -> Step:
    """Insert step `index` of a run (status queued), or get it if it exists."""
    values = {
        "id": uuid.uuid4(),
        "run_id": run_id,
        "index": index,
        "name": name,
        "service": service,
        "node": node,
        "status": Status.QUEUED,
        "queued_at": now or utc_now(),
    }
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
    now = now or utc_now()
    # Row lock on PostgreSQL (SQLite's write lock is already held): two deliveries of
    # one task number their attempts one after the other. Lock order is always step,
    # then run, so writers never wait on each other in a cycle.
    step = session.scalars(
        select(Step)
        .where(Step.id == step_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()
    if step is None:
        raise UnknownRun(f"no step {step_id} in the store")
    run_status = session.scalar(select(Run.status).where(Run.id == step.run_id))
    if step.status.terminal or (run_status is not None and run_status.terminal):
        return None
    number = session.scalar(
        select(func.coalesce(func.max(Attempt.number), 0)).where(Attempt.step_id == step_id)
    )
    attempt = Attempt(
        id=uuid.uuid4(),
        step_id=step_id,
        number=(number or 0) + 1,
        task_id=task_id,
        worker=worker,
        status=AttemptStatus.RUNNING,
        started_at=now,
    )
    session.add(attempt)
    step.status = Status.RUNNING
    step.started_at = step.started_at or now
    session.execute(
        update(Run)
        .where(Run.id == step.run_id, Run.status == Status.QUEUED)
        .values(status=Status.RUNNING, started_at=now)
    )
    session.flush()
    return attempt


def finish_attempt(
    session: Session,
    attempt_id: uuid.UUID,
    *,
    error: str | None = None,
    now: datetime | None = None,
) -> None:
    """Close an attempt: succeeded without `error`, failed with it. Repeats are no-ops."""
    session.execute(
        update(Attempt)
        .where(Attempt.id == attempt_id, Attempt.finished_at.is_(None))
        .values(
            finished_at=now or utc_now(),
            status=AttemptStatus.FAILED if error else AttemptStatus.SUCCEEDED,
            error=error,
        )
    )


def record_result(
    session: Session,
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
    values = {
        "step_id": step_id,
        "text": text,
        "data": data,
        "task_id": task_id,
        "created_at": now or utc_now(),
    }
    return insert_ignoring_conflicts(session, Result, values)


def finish_step(
    session: Session,
    step_id: uuid.UUID,
    *,
    status: Status,
    timings: StepTimings | None = None,
    error: str | None = None,
    attempt_id: uuid.UUID | None = None,
    now: datetime | None = None,
) -> bool:
    """Mark a step finished with its timings; the first finish wins.

    Args:
        status: a terminal status (succeeded, failed, cancelled, skipped).
        attempt_id: the attempt that ends here; it is closed too, and its duration
            becomes the step's `latency_ms`.

    Returns:
        True if this call finished the step, False if it was already finished.
    """
    status = Status(status)
    if not status.terminal:
        raise BadInput(f"finish_step needs a final status, not {status.value!r}")
    now = now or utc_now()
    started = None
    if attempt_id is not None:
        finish_attempt(session, attempt_id, error=error, now=now)
        started = session.scalar(select(Attempt.started_at).where(Attempt.id == attempt_id))
    started = started or session.scalar(select(Step.started_at).where(Step.id == step_id))
    latency_ms = (now - started).total_seconds() * 1000 if started else None
    values = {
        "status": status,
        "finished_at": now,
        "error": error,
        "latency_ms": latency_ms,
        **asdict(timings or StepTimings()),
    }
    result = session.execute(
        update(Step).where(Step.id == step_id, Step.status.not_in(TERMINAL)).values(**values)
    )
    return cast(CursorResult[Any], result).rowcount == 1


def finish_run(
    session: Session,
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
    result = session.execute(
        update(Run)
        .where(Run.id == run_id, Run.status.not_in(TERMINAL))
        .values(status=status, finished_at=now or utc_now(), error=error)
    )
    return cast(CursorResult[Any], result).rowcount == 1


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise BadInput(f"{moment.isoformat()} has no time zone; the store takes aware times")
    return moment
