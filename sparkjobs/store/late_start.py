"""An attempt written whole at its end (PostgreSQL), numbered after a twin's.

The start of a step that needs no lease is deferred (`sparkjobs.execution.deferred_start`):
when the step succeeds before anything wrote it, the attempt's row, the step's and
the run's start and the success are one statement, one round trip
(`sparkjobs.store.runs.succeed_at_once` with its `worker`). That statement numbers the
attempt from what it saw when it began; when a twin delivery took the number
meanwhile, the attempt is inserted here, with the next free one.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING

from sparkjobs.store import statements
from sparkjobs.store.keyed import named_params

if TYPE_CHECKING:
    from sparkjobs.store.direct import Executor

# How often to number a twin's attempt again when another keeps taking its number.
NUMBERING_TRIES = 10


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
