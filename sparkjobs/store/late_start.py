"""An attempt written whole at its end, with the success of its step (PostgreSQL).

The start of a step that needs no lease is deferred (`sparkjobs.execution.deferred_start`):
when the step succeeds before anything wrote it, the attempt's row, the step's and
the run's start and the success are one statement, one round trip.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sparkjobs.store import statements
from sparkjobs.store.keyed import named_params
from sparkjobs.store.runs import StepTimings, success_params, utc_now

if TYPE_CHECKING:
    from sparkjobs.store.direct import Executor

# How often to number a twin's attempt again when another keeps taking its number.
NUMBERING_TRIES = 10


def succeed_with_start(
    session: Executor,
    step_id: uuid.UUID,
    run_id: uuid.UUID,
    *,
    last: bool,
    attempt_id: uuid.UUID,
    started_at: datetime,
    worker: str,
    text: str | None,
    data: dict[str, Any] | None,
    task_id: str,
    timings: StepTimings | None = None,
    now: datetime | None = None,
) -> bool:
    """`sparkjobs.store.runs.succeed_at_once` for an attempt whose start is not written:
    the attempt is inserted closed, and the step and a queued run get their start too.

    Returns:
        True if this call finished the step (False: a twin delivery already had).
    """
    now = now or utc_now()
    values = success_params(
        step_id, run_id, last=last, attempt_id=attempt_id, started_at=started_at, text=text,
        data=data, task_id=task_id, timings=timings, now=now,
    ) | named_params(worker=worker, started_at=started_at)  # fmt: skip
    row: Any = session.execute(statements.succeed_step_pg(with_start=True), values).first()
    if not row.recorded:  # a twin numbered its attempt as this one while it ran
        record_attempt(session, step_id, attempt_id, task_id=task_id, worker=worker,
                       started_at=started_at, finished_at=now)  # fmt: skip
    return bool(row.done)


def record_attempt(
    session: Executor,
    step_id: uuid.UUID,
    attempt_id: uuid.UUID,
    *,
    task_id: str,
    worker: str,
    started_at: datetime,
    finished_at: datetime,
) -> None:
    """Insert a whole succeeded attempt, numbered after the step's others.

    Each try numbers it from what has committed when it begins, so it takes the
    next free number unless yet another twin takes that one first.

    Raises:
        RuntimeError: no number was free after `NUMBERING_TRIES` tries.
    """
    values = named_params(attempt_id=attempt_id, step_id=step_id, task_id=task_id,
                          worker=worker, started_at=started_at,
                          finished_at=finished_at)  # fmt: skip
    for _ in range(NUMBERING_TRIES):
        if session.execute(statements.record_attempt_pg(), values).scalar():
            return
    raise RuntimeError(f"attempt {attempt_id} of step {step_id} found no free number")
