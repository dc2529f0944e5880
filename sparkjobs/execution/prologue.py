"""A step task's prologue: read the step, let the gate admit it, open its attempt.

On PostgreSQL the step is read first, without a lock. A kind that needs no lease
(custom) starts at once, its attempt's start deferred
(`sparkjobs.execution.deferred_start`): written with its success, or while it runs
if it lasts. A kind the gate admits (chat, clone, speak) takes its lease, then
opens its attempt in one statement (`open_at_once`), run outside a transaction: it
locks the step's row, numbers and inserts the attempt, and marks the step and a
queued run running, one round trip where a transaction of a locked read and an
INSERT took four. SQLite, and the rare twin delivery whose attempt number the other
took, go through `sparkjobs.execution.state.start_step` in a transaction.
"""

from __future__ import annotations

import dataclasses
import functools
import uuid
from datetime import datetime
from typing import Any, cast

from celery import Task
from sqlalchemy import (
    Boolean,
    Engine,
    bindparam,
    case,
    exists,
    func,
    literal,
    null,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert

from sparkjobs.broker.app import SparkjobsApp
from sparkjobs.dispatch.admission import admit_at_once, release_current
from sparkjobs.dispatch.standing import GATED_KINDS, Standing, standing_of
from sparkjobs.errors import UnknownRun
from sparkjobs.execution.admit import admit
from sparkjobs.execution.context import context_of, step_columns
from sparkjobs.execution.deferred_start import defer
from sparkjobs.execution.state import Started, read_step, start_step
from sparkjobs.store.direct import Transaction, transaction
from sparkjobs.store.engine import shared_engine
from sparkjobs.store.models import TERMINAL, Attempt, AttemptStatus, Run, Status, Step
from sparkjobs.store.runs import utc_now
from sparkjobs.store.statements import not_one_of


def start_task_step(task: Task[Any, Any], run: uuid.UUID, index: int, service: str) -> Started:
    """Open the attempt of step `index` of `run` for `task`, admitted by the gate.

    Returns a `Started` without an attempt when the step or its run is finished.

    Raises:
        celery.exceptions.Retry: the gate holds the step back; why is recorded.
        celery.exceptions.Ignore: its server stayed down past the step's deadline.
        UnknownRun: the run or the step is not in the store.
    """
    engine = shared_engine(cast(SparkjobsApp, task.app).sparkjobs_config.database)
    task_id, worker = str(task.request.id), str(task.request.hostname)
    if engine.dialect.name != "postgresql":
        return _start_in_transaction(task, engine, run, index, service, task_id, worker)
    with transaction(engine, autocommit=True) as tx:
        read, startable = read_step(tx, run, index)
    if not startable:
        return read
    if not read.gate_first:
        admit(task, str(run), index, service, standing=read.standing)  # its ticket
        return _deferred(engine, read, task_id, worker)
    if not admit_at_once(task, str(run), index, service, read.standing):
        admit(task, str(run), index, service, standing=read.standing)  # waits, or raises
    opened = _open(engine, run, index, task_id, worker, admitted=True)
    if opened is None:
        return _start_admitted(engine, run, index, task_id, worker)
    if opened.attempt_id is None:  # finished meanwhile: the lease goes back now
        release_current()
    return opened


def _deferred(engine: Engine, read: Started, task_id: str, worker: str) -> Started:
    """The step started, its attempt's start deferred: written by `open_at_once` when
    something needs it before the step's success, which else writes it."""
    run, index = read.context.run_id, read.context.index
    attempt_id, now = uuid.uuid4(), utc_now()

    def write() -> uuid.UUID | None:
        opened = _open(engine, run, index, task_id, worker, admitted=False,
                       attempt_id=attempt_id, now=now)  # fmt: skip
        if opened is None:  # a twin took this attempt's number
            opened = _start_admitted(engine, run, index, task_id, worker, now=now)
        return opened.attempt_id

    return dataclasses.replace(read, attempt_id=attempt_id, started_at=now, deferred=defer(write))


def _start_in_transaction(
    task: Task[Any, Any], engine: Engine, run: uuid.UUID, index: int, service: str,
    task_id: str, worker: str,
) -> Started:  # fmt: skip
    """The prologue as one transaction that holds the step's lock: its gate is tried
    once inside it (one Redis round trip); only when that try finds no slot, or the
    server unwell, does the task leave it, let `admit` wait or record why, and open
    the attempt in a second one."""
    admitted = False

    def at_once(standing: Standing) -> bool:
        nonlocal admitted
        admitted = admit_at_once(task, str(run), index, service, standing)
        return admitted

    with transaction(engine) as session:
        started = start_step(session, run, index, task_id=task_id, worker=worker,
                             gate_first=True, admit_now=at_once)  # fmt: skip
    if admitted:
        return started
    admit(task, str(run), index, service, standing=started.standing)
    if started.gate_first:
        return _start_admitted(engine, run, index, task_id, worker)
    return started


def _start_admitted(
    engine: Engine, run: uuid.UUID, index: int, task_id: str, worker: str,
    now: datetime | None = None,
) -> Started:  # fmt: skip
    """Open the attempt of a step the gate has admitted (or that needs no lease), in a
    transaction that locks its row (`start_step`)."""
    with transaction(engine) as session:
        return start_step(session, run, index, task_id=task_id, worker=worker, now=now)


def _open(
    engine: Engine, run: uuid.UUID, index: int, task_id: str, worker: str, *, admitted: bool,
    attempt_id: uuid.UUID | None = None, now: datetime | None = None,
) -> Started | None:  # fmt: skip
    with transaction(engine, autocommit=True) as tx:
        return open_at_once(tx, run, index, task_id=task_id, worker=worker, admitted=admitted,
                            attempt_id=attempt_id, now=now)  # fmt: skip


def open_at_once(
    tx: Transaction,
    run_id: uuid.UUID,
    index: int,
    *,
    task_id: str,
    worker: str,
    admitted: bool,
    attempt_id: uuid.UUID | None = None,
    now: datetime | None = None,
) -> Started | None:
    """Read step `index` of a run and open its attempt, in one PostgreSQL statement.

    Nothing is written when the step or its run is finished, nor, unless `admitted`
    (a lease is held), when the step's kind needs the gate (`Started.gate_first`).
    With `admitted`, the step's recorded wait is cleared.

    Returns:
        None when the attempt was not opened for its number: a twin delivery of the
        task opened the same number first (the statement numbers attempts from what
        it saw when it began). The caller opens it in a transaction instead.

    Raises:
        UnknownRun: the run or the step is not in the store.
    """
    now = now or utc_now()
    attempt_id = attempt_id or uuid.uuid4()
    params = {"p_run_id": run_id, "p_index": index, "p_attempt_id": attempt_id,
              "p_task_id": task_id, "p_worker": worker, "p_now": now,
              "p_admitted": admitted}  # fmt: skip
    row = tx.execute(_opening(), params).first()
    if row is None:
        raise UnknownRun(f"no step {index} of run {run_id} in the store")
    context = context_of(tx, run_id, index, row)
    status = row.locked_status  # as the row lock found it, not as the statement began
    standing = dataclasses.replace(standing_of(row), status=status)
    if row.opened:
        return Started(context, standing, status, attempt_id, now)
    if status.terminal or row.run_status.terminal:
        return Started(context, standing, status, None, None)
    if standing.gated() and not admitted:
        return Started(context, standing, status, None, None, gate_first=True)
    return None


@functools.cache
def _opening() -> Any:
    """The statement of `open_at_once`, built once.

    `target` locks the step's row, and reads it as it is once locked. The INSERT of
    the attempt selects from it only when neither the step nor its run is finished
    and the kind needs no lease (or holds one), and numbers the attempt from the
    statement's snapshot: a twin that committed the same number while this one
    waited for the lock makes it a conflict, and nothing is inserted. The step and a
    queued run are marked running only when the attempt was inserted. The row
    returned is the one `sparkjobs.execution.state.start_step` reads, as of before
    this statement, with the locked status and whether the attempt was opened.
    `synchronous_commit` is off for it, as for the locked read (`step_columns`).
    """
    steps, runs, attempts = (cast(Any, e).__table__ for e in (Step, Run, Attempt))
    run_id = bindparam("p_run_id", type_=steps.c.run_id.type)
    index = bindparam("p_index", type_=steps.c.index.type)
    now = bindparam("p_now", type_=steps.c.started_at.type)
    admitted = bindparam("p_admitted", type_=Boolean)
    target = (
        select(steps.c.id, steps.c.status, steps.c.spec["kind"].as_string().label("kind"))
        .where(steps.c.run_id == run_id, steps.c.index == index)
        .with_for_update()
        .cte("target")
    )
    run_open = exists().where(runs.c.id == run_id, not_one_of(runs.c.status, TERMINAL))
    needs_no_lease = not_one_of(func.coalesce(target.c.kind, "custom"), sorted(GATED_KINDS))
    number = (
        select(func.coalesce(func.max(attempts.c.number), 0) + literal(1))
        .where(attempts.c.step_id == target.c.id)
        .scalar_subquery()
    )
    source = select(
        bindparam("p_attempt_id", type_=attempts.c.id.type), target.c.id, number,
        bindparam("p_task_id", type_=attempts.c.task_id.type),
        bindparam("p_worker", type_=attempts.c.worker.type),
        literal(AttemptStatus.RUNNING, attempts.c.status.type), now,
    ).where(not_one_of(target.c.status, TERMINAL), run_open,
            or_(admitted, needs_no_lease))  # fmt: skip
    opened = (
        pg_insert(attempts)
        .from_select(["id", "step_id", "number", "task_id", "worker", "status", "started_at"],
                     source)
        .on_conflict_do_nothing(index_elements=["step_id", "number"])
        .returning(attempts.c.step_id)
        .cte("opened")
    )  # fmt: skip
    # With a lease (`admitted`), the step no longer waits for one.
    cleared = {name: case((admitted, null()), else_=steps.c[name])
               for name in ("waiting_for", "waiting_since")}  # fmt: skip
    step = (
        update(steps)
        .where(steps.c.id == opened.c.step_id)
        .values(status=Status.RUNNING, started_at=func.coalesce(steps.c.started_at, now), **cleared)
        .returning(steps.c.id)
        .cte("step")
    )
    run = (
        update(runs)
        .where(runs.c.id == run_id, runs.c.status == Status.QUEUED,
               exists().where(opened.c.step_id.is_not(None)))
        .values(status=Status.RUNNING, started_at=now)
        .returning(runs.c.id)
        .cte("run")
    )  # fmt: skip
    columns, joined = step_columns()
    count = select(func.count()).select_from(opened).scalar_subquery()
    return (
        select(*columns, target.c.status.label("locked_status"), count.label("opened"),
               func.set_config("synchronous_commit", "off", True))
        .select_from(joined.join(target, target.c.id == steps.c.id))
        .where(steps.c.run_id == run_id, steps.c.index == index)
        .add_cte(step, run)
    )  # fmt: skip
