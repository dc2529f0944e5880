"""Writing runs and their steps, safely when a task runs twice (attempts: `attempts`).

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
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import CursorResult, select
from sqlalchemy.orm import Session

from sparkjobs.errors import BadInput
from sparkjobs.store import statements
from sparkjobs.store.keyed import (
    dialect_insert,
    dialect_name,
    insert_ignoring_conflicts,
    named_params,
    typed_values,
)
from sparkjobs.store.models import (
    Run,
    RunKind,
    Status,
    Step,
    Trigger,
)

if TYPE_CHECKING:
    from sparkjobs.store.direct import Executor


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
