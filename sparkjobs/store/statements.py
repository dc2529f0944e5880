"""The statements a worker runs for every step, built once and reused with parameters.

Starting and finishing a step are a handful of INSERTs and UPDATEs that run for every
message a worker takes. Built per call, each costs more Python (constructing the
expression, computing its cache key, the ORM's bookkeeping) than its round trip to
the database; built once on the tables, with typed parameters, a call only binds
values. Each statement's parameters are named `p_<column>` (`keyed.named_params`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Table,
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
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from sparkjobs.store.keyed import typed_param
from sparkjobs.store.models import TERMINAL, Attempt, AttemptStatus, Result, Run, Status, Step


def _table(entity: type[Any]) -> Table:
    table: Table = entity.__table__
    return table


def not_one_of(value: Any, excluded: Iterable[Any]) -> Any:
    """`value` NOT IN `excluded`, each a literal of the value's type, not one list
    parameter, which would be expanded at every execution (and which
    `sparkjobs.store.direct` cannot run)."""
    kind = getattr(value, "type", None)
    return value.not_in([literal(each, kind) for each in excluded])


def _unfinished(status: Column[Any]) -> Any:
    """`status` is not final."""
    return not_one_of(status, TERMINAL)


@functools.cache
def insert_attempt() -> Any:
    """INSERT the next attempt of a step, its number computed from the step's others.

    Parameters: id, step_id, task_id, worker, started_at. Run it with the step's
    row locked, so two deliveries number their attempts one after the other.
    """
    attempts = _table(Attempt)
    number = (
        select(func.coalesce(func.max(attempts.c.number), 0) + literal(1))
        .where(attempts.c.step_id == typed_param(attempts, "step_id"))
        .scalar_subquery()
    )
    return attempts.insert().values(
        id=typed_param(attempts, "id"),
        step_id=typed_param(attempts, "step_id"),
        number=number,
        task_id=typed_param(attempts, "task_id"),
        worker=typed_param(attempts, "worker"),
        status=AttemptStatus.RUNNING,
        started_at=typed_param(attempts, "started_at"),
    )


@functools.cache
def start_step() -> Any:
    """UPDATE a step to running. Parameters: id, started_at."""
    steps = _table(Step)
    return (
        update(steps)
        .where(steps.c.id == typed_param(steps, "id"))
        .values(status=Status.RUNNING, started_at=typed_param(steps, "started_at"))
    )


@functools.cache
def start_run() -> Any:
    """UPDATE a queued run to running. Parameters: id, started_at."""
    runs = _table(Run)
    return (
        update(runs)
        .where(runs.c.id == typed_param(runs, "id"), runs.c.status == Status.QUEUED)
        .values(status=Status.RUNNING, started_at=typed_param(runs, "started_at"))
    )


@functools.cache
def finish_attempt() -> Any:
    """UPDATE an open attempt to closed. Parameters: id, finished_at, status, error."""
    attempts = _table(Attempt)
    return (
        update(attempts)
        .where(attempts.c.id == typed_param(attempts, "id"), attempts.c.finished_at.is_(None))
        .values(
            finished_at=typed_param(attempts, "finished_at"),
            status=typed_param(attempts, "status"),
            error=typed_param(attempts, "error"),
        )
    )


@functools.cache
def one_piece() -> Any:
    """UPDATE a speak step spoken by its own task to one piece of one. Parameters: id."""
    steps = _table(Step)
    return (
        update(steps)
        .where(steps.c.id == typed_param(steps, "id"), steps.c.pieces_total.is_(None))
        .values(pieces_total=1, pieces_done=1)
    )


STEP_OUTCOME = (
    "status", "finished_at", "error", "latency_ms",
    "ttft_ms", "tokens_in", "tokens_out", "tokens_per_s", "audio_s", "rtf",
)  # fmt: skip


@functools.cache
def finish_step() -> Any:
    """UPDATE an unfinished step with its outcome. Parameters: id and `STEP_OUTCOME`."""
    steps = _table(Step)
    return (
        update(steps)
        .where(steps.c.id == typed_param(steps, "id"), _unfinished(steps.c.status))
        .values({name: typed_param(steps, name) for name in STEP_OUTCOME})
    )


@functools.cache
def finish_run() -> Any:
    """UPDATE an unfinished run to its end. Parameters: id, status, finished_at, error."""
    runs = _table(Run)
    return (
        update(runs)
        .where(runs.c.id == typed_param(runs, "id"), _unfinished(runs.c.status))
        .values(
            status=typed_param(runs, "status"),
            finished_at=typed_param(runs, "finished_at"),
            error=typed_param(runs, "error"),
        )
    )


@functools.cache
def insert_result(dialect: str) -> Any:
    """INSERT a step's result unless it has one. Parameters: step_id, text, data,
    task_id, created_at."""
    results = _table(Result)
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    names = ("step_id", "text", "data", "task_id", "created_at")
    return (
        insert(results)
        .values({name: typed_param(results, name) for name in names})
        .on_conflict_do_nothing()
        # SQLAlchemy keeps an INSERT's rowcount only when asked (psycopg would say -1).
        .execution_options(preserve_rowcount=True)
    )


# --- PostgreSQL: one statement for what takes several elsewhere -----------------
# PostgreSQL runs INSERTs and UPDATEs inside WITH, each exactly once, on one snapshot;
# so the writes of a step's start, and those of its success, each go in one round
# trip. SQLite runs the same writes one statement at a time.


def _named(name: str, table: Table, column: str) -> Any:
    """A parameter `p_<name>` typed as `column` of `table`."""
    return bindparam(f"p_{name}", type_=table.c[column].type)


@functools.cache
def start_attempt_pg() -> Any:
    """INSERT the next attempt, and mark the step and a queued run running.

    Parameters: id, step_id, task_id, worker, started_at (the attempt's and the
    run's), run_id, step_started_at.
    """
    steps, runs = _table(Step), _table(Run)
    attempt = insert_attempt().returning(_table(Attempt).c.id).cte("attempt")
    step = (
        update(steps)
        .where(steps.c.id == _named("step_id", steps, "id"))
        .values(status=Status.RUNNING, started_at=_named("step_started_at", steps, "started_at"))
        .returning(steps.c.id)
        .cte("step")
    )
    run = (
        update(runs)
        .where(runs.c.id == _named("run_id", runs, "id"), runs.c.status == Status.QUEUED)
        .values(status=Status.RUNNING, started_at=typed_param(runs, "started_at"))
        .returning(runs.c.id)
        .cte("run")
    )
    count = select(func.count()).select_from(attempt).scalar_subquery()
    return select(count.label("attempts")).add_cte(step, run)


@functools.cache
def succeed_step_pg(*, with_start: bool = False) -> Any:
    """Store a step's result (unless it has one), close its attempt, finish the step
    (unless finished) and, if `p_last` and this finished the step, the run.

    Parameters: step_id, text, data, task_id, finished_at, attempt_id, run_id, last,
    and `STEP_OUTCOME`'s latency and timings. Returns one row: `done`, 1 if this
    call finished the step, else 0, and `recorded`, the attempts written.

    `with_start`: the attempt's start was deferred (`sparkjobs.execution.deferred_start`)
    and is written here: the attempt is inserted closed, numbered after the step's
    others (nothing is inserted if a twin took that number meanwhile: `recorded` 0),
    the step and the run get their start time if they have none, and a queued run
    becomes running unless this finished it. More parameters: worker, started_at.
    """
    steps, runs, attempts, results = _table(Step), _table(Run), _table(Attempt), _table(Result)
    now = typed_param(steps, "finished_at")
    stored = {name: typed_param(results, name) for name in ("step_id", "text", "data", "task_id")}
    result = (
        pg_insert(results)
        .values(created_at=now, **stored)
        .on_conflict_do_nothing()
        .returning(results.c.step_id)
        .cte("result")
    )
    last = bindparam("p_last", type_=Boolean())
    started = _named("started_at", attempts, "started_at")
    outcome = {name: typed_param(steps, name) for name in STEP_OUTCOME[3:]}
    step_values = {"status": Status.SUCCEEDED, "finished_at": now, "error": None, **outcome}
    if with_start:
        attempt = _closed_attempt(now, started)
        step_values["started_at"] = func.coalesce(steps.c.started_at, started)
    else:
        attempt = (
            update(attempts)
            .where(attempts.c.id == _named("attempt_id", attempts, "id"),
                   attempts.c.finished_at.is_(None))
            .values(finished_at=now, status=AttemptStatus.SUCCEEDED, error=None)
            .returning(attempts.c.id)
            .cte("attempt")
        )  # fmt: skip
    step = (
        update(steps)
        .where(steps.c.id == _named("step_id", steps, "id"), _unfinished(steps.c.status))
        .values(step_values)
        .returning(steps.c.id)
        .cte("step")
    )
    ends: list[Any] = [last]
    run_values: dict[str, Any] = {"status": Status.SUCCEEDED, "finished_at": now, "error": None}
    if with_start:  # a queued run starts here, and ends here too if this was its last step
        ends = [or_(last, runs.c.status == Status.QUEUED)]
        run_values = {
            "status": case((last, Status.SUCCEEDED), else_=Status.RUNNING),
            "finished_at": case((last, now), else_=null()),
            "error": None,
            "started_at": func.coalesce(runs.c.started_at, started),
        }
    run = (
        update(runs)
        .where(runs.c.id == _named("run_id", runs, "id"), _unfinished(runs.c.status),
               *ends, exists(select(step.c.id)))
        .values(run_values)
        .returning(runs.c.id)
        .cte("run")
    )  # fmt: skip
    done = select(func.count()).select_from(step).scalar_subquery().label("done")
    recorded = select(func.count()).select_from(attempt).scalar_subquery().label("recorded")
    return select(done, recorded).add_cte(result, run)


@functools.cache
def record_attempt_pg() -> Any:
    """INSERT a whole attempt, succeeded, numbered after the step's others unless a
    twin takes that number meanwhile. Parameters: attempt_id, step_id, task_id,
    worker, started_at, finished_at. Returns `recorded`: 1, or 0 (try again)."""
    attempts = _table(Attempt)
    attempt = _closed_attempt(typed_param(attempts, "finished_at"),
                              typed_param(attempts, "started_at"))  # fmt: skip
    return select(select(func.count()).select_from(attempt).scalar_subquery().label("recorded"))


def _closed_attempt(finished_at: Any, started_at: Any) -> Any:
    """The CTE that inserts a whole succeeded attempt (`succeed_step_pg(with_start=True)`)."""
    attempts = _table(Attempt)
    step_id = _named("step_id", attempts, "step_id")
    number = (
        select(func.coalesce(func.max(attempts.c.number), 0) + literal(1))
        .where(attempts.c.step_id == step_id)
        .scalar_subquery()
    )
    return (
        pg_insert(attempts)
        .values(id=_named("attempt_id", attempts, "id"), step_id=step_id, number=number,
                task_id=_named("task_id", attempts, "task_id"),
                worker=_named("worker", attempts, "worker"), status=AttemptStatus.SUCCEEDED,
                started_at=started_at, finished_at=finished_at)
        .on_conflict_do_nothing(index_elements=["step_id", "number"])
        .returning(attempts.c.id)
        .cte("attempt")
    )  # fmt: skip
