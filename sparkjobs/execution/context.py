"""A step as a task reads it: its row, its run's parameters and slot, and the outputs
of the steps before it, in one query (`context_of`), so templates can be rendered."""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import Table, bindparam, func, select
from sqlalchemy.orm import Session, sessionmaker

from sparkjobs.errors import UnknownRun
from sparkjobs.execution.templates import TemplateContext, output_text
from sparkjobs.store.engine import shared_sessions
from sparkjobs.store.keyed import typed_param
from sparkjobs.store.models import (
    Result,
    Run,
    Step,
)

if TYPE_CHECKING:
    from sparkjobs.store.direct import Executor


def sessions_for(database_url: str) -> sessionmaker[Session]:
    """One session factory (and connection pool) per database, shared by a worker's threads."""
    return shared_sessions(database_url)


@dataclass(frozen=True)
class StepContext:
    """Everything about a step that its execution reads, loaded in one go."""

    run_id: uuid.UUID
    step_id: uuid.UUID
    index: int
    steps: int  # how many steps the run has
    service: str
    node: str
    spec: dict[str, Any]
    params: dict[str, Any]
    slot: datetime
    outputs: tuple[str, ...]  # earlier steps' outputs, as templates see them
    previous_data: dict[str, Any] | None  # the previous step's JSON output, if any
    job: str = "?"  # the run's job name (for the labels of the messages it publishes)

    @property
    def kind(self) -> str:
        return str(self.spec.get("kind", "custom"))

    @property
    def where(self) -> str:
        return str(self.spec.get("origin", f"step {self.index}"))

    def template(self) -> TemplateContext:
        return TemplateContext(self.slot, self.params, self.outputs)


def find_step(session: Session, run_id: uuid.UUID, index: int) -> Step:
    """Step `index` of a run.

    Raises:
        UnknownRun: the run has no such step (pruned, or a message from elsewhere).
    """
    step = session.scalars(select(Step).where(Step.run_id == run_id, Step.index == index)).first()
    if step is None:
        raise UnknownRun(f"run {run_id} has no step {index} in the store")
    return step


def step_columns() -> tuple[tuple[Any, ...], Any]:
    """What a step task reads of its step: the step joined with its run, the run's
    step count and what admission needs (`sparkjobs.dispatch.admission.standing_columns`),
    as the columns and the join they select from (bound to `p_run_id`, `p_index`)."""
    from sparkjobs.dispatch.standing import standing_columns

    # On the tables, not the ORM entities: a Core query skips the ORM's row handling.
    steps, runs = Step.__table__, Run.__table__
    others = steps.alias()
    total = (
        select(func.count())
        .select_from(others)
        .where(others.c.run_id == bindparam("p_run_id", type_=steps.c.run_id.type))
    )
    columns = (
        *standing_columns(), steps.c.service, steps.c.node, steps.c.started_at,
        runs.c.status.label("run_status"), runs.c.job, runs.c.params,
        runs.c.scheduled_for, runs.c.created_at, total.scalar_subquery().label("total"),
    )  # fmt: skip
    return columns, steps.join(runs, runs.c.id == steps.c.run_id)


@functools.cache
def _step_query(*, lock: bool, dialect: str = "") -> Any:
    """Step `p_index` of run `p_run_id` as `step_columns` reads it: one query, built
    once (every task runs it), with the step's row locked if `lock`.

    Locked on PostgreSQL, it also turns off `synchronous_commit` for its transaction
    (the start of an attempt): that commit then returns without waiting for the WAL
    to reach the disk. The step's finish commits synchronously, and the WAL is one
    sequence, so a finished step is as durable as ever; a crash between the two loses
    only the "running" mark of a step whose message is then delivered again.
    """
    steps = Step.__table__
    columns, joined = step_columns()
    query = (
        select(*columns)
        .select_from(joined)
        .where(steps.c.run_id == bindparam("p_run_id", type_=steps.c.run_id.type),
               steps.c.index == bindparam("p_index", type_=steps.c.index.type))
    )  # fmt: skip
    if not lock:
        return query
    if dialect == "postgresql":  # in the query itself: no round trip of its own
        query = query.add_columns(func.set_config("synchronous_commit", "off", True))
    return query.with_for_update(of=steps)


@functools.cache
def _earlier_query() -> Any:
    """The outputs of the steps before `p_index` of run `p_run_id`, in order."""
    steps, results = cast(Table, Step.__table__), Result.__table__
    return (
        select(steps.c.index, results.c.text, results.c.data)
        .join(results, results.c.step_id == steps.c.id, isouter=True)
        .where(steps.c.run_id == typed_param(steps, "run_id"),
               steps.c.index < typed_param(steps, "index"))
        .order_by(steps.c.index)
    )  # fmt: skip


def context_of(session: Executor, run_id: uuid.UUID, index: int, row: Any) -> StepContext:
    """The context of a step from a row of `step_columns` (and its earlier steps' outputs)."""
    spec = dict(row.spec or {})
    earlier: list[Any] = []
    if index > 0:
        query, params = _earlier_query(), {"p_run_id": run_id, "p_index": index}
        earlier = list(session.execute(query, params).all())
    slot = (row.scheduled_for or row.created_at).astimezone(ZoneInfo(str(spec.get("tz", "UTC"))))
    return StepContext(
        run_id=run_id,
        step_id=row.id,
        index=index,
        steps=int(row.total or 0),
        service=row.service,
        node=row.node,
        spec=spec,
        params=dict(row.params or {}),
        slot=slot,
        outputs=tuple(output_text(e.text, e.data) for e in earlier),
        previous_data=earlier[-1].data if earlier else None,
        job=row.job,
    )


def step_row(session: Executor, run_id: uuid.UUID, index: int, *, lock: bool = False) -> Any:
    """Step `index` of a run as `step_columns` reads it (its row locked if `lock`).

    Raises:
        UnknownRun: the run or the step is not in the store.
    """
    query = _step_query(lock=lock, dialect=session.get_bind().dialect.name if lock else "")
    row = session.execute(query, {"p_run_id": run_id, "p_index": index}).first()
    if row is None:
        raise UnknownRun(f"no step {index} of run {run_id} in the store")
    return row


def load_context(session: Session, run_id: uuid.UUID, index: int) -> StepContext:
    """The context of step `index` of run `run_id`: spec, parameters, slot, outputs.

    Raises:
        UnknownRun: the run or the step is not in the store.
    """
    return context_of(session, run_id, index, step_row(session, run_id, index))
