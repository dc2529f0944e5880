"""The SQL a step needs: its context, its outcome, and the pieces of long speech.

Every write is keyed and guarded, so a task that runs twice changes nothing the
second time: a finished step stays finished, a finished piece is counted once.
Functions take the caller's session (`with sessions.begin() as session:`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from sparkjobs.errors import UnknownRun
from sparkjobs.execution.templates import TemplateContext, output_text
from sparkjobs.store.engine import insert_ignoring_conflicts, shared_sessions
from sparkjobs.store.models import (
    Attempt,
    AttemptStatus,
    PieceStatus,
    Result,
    Run,
    Status,
    Step,
    StepPiece,
)
from sparkjobs.store.runs import finish_run, finish_step, utc_now


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


def load_context(session: Session, run_id: uuid.UUID, index: int) -> StepContext:
    """The context of step `index` of run `run_id`: spec, parameters, slot, outputs."""
    run = session.get(Run, run_id)
    if run is None:
        raise UnknownRun(f"no run {run_id} in the store")
    step = find_step(session, run_id, index)
    spec = dict(step.spec or {})
    rows = session.execute(
        select(Step.index, Result.text, Result.data)
        .join(Result, Result.step_id == Step.id, isouter=True)
        .where(Step.run_id == run_id, Step.index < index)
        .order_by(Step.index)
    ).all()
    steps = session.scalar(select(func.count()).select_from(Step).where(Step.run_id == run_id))
    slot = (run.scheduled_for or run.created_at).astimezone(ZoneInfo(str(spec.get("tz", "UTC"))))
    return StepContext(
        run_id=run_id,
        step_id=step.id,
        index=index,
        steps=int(steps or 0),
        service=step.service,
        node=step.node,
        spec=spec,
        params=dict(run.params or {}),
        slot=slot,
        outputs=tuple(output_text(row.text, row.data) for row in rows),
        previous_data=rows[-1].data if rows else None,
    )


def succeed_step(
    session: Session,
    context: StepContext,
    *,
    attempt_id: uuid.UUID | None,
    text: str | None = None,
    data: dict[str, Any] | None = None,
    task_id: str | None = None,
    **finish: Any,
) -> bool:
    """Record a step's output and finish it; the run too when this was its last step.

    Returns:
        True if this call finished the step (False: a twin delivery already had).
    """
    from sparkjobs.store.runs import record_result

    if text is not None or data is not None:
        record_result(session, context.step_id, text=text, data=data, task_id=task_id)
    done = finish_step(
        session, context.step_id, status=Status.SUCCEEDED, attempt_id=attempt_id, **finish
    )
    if done and context.index == context.steps - 1:
        finish_run(session, context.run_id, status=Status.SUCCEEDED)
    return done


def fail_step(
    session: Session,
    run_id: uuid.UUID,
    step_id: uuid.UUID,
    error: str,
    *,
    attempt_id: uuid.UUID | None = None,
) -> None:
    """Fail a step and its run with the same error; later steps stay queued, never run."""
    finish_step(session, step_id, status=Status.FAILED, error=error, attempt_id=attempt_id)
    finish_run(session, run_id, status=Status.FAILED, error=error)


def next_to_publish(session: Session, run_id: uuid.UUID, index: int) -> Step | None:
    """The step after `index` if the run goes on and it has not started yet.

    A redelivered task whose step already succeeded calls this too: if the worker
    died between recording the step and publishing the next, the run moves on.
    """
    run_status = session.scalar(select(Run.status).where(Run.id == run_id))
    if run_status is None or run_status.terminal:
        return None
    step = session.scalars(
        select(Step).where(Step.run_id == run_id, Step.index == index + 1)
    ).first()
    if step is None or step.status != Status.QUEUED:
        return None
    return step


def run_ended(session: Session, run_id: uuid.UUID) -> bool:
    """Whether the run is finished (failed or cancelled, say): the checkpoint that work
    not yet sent to a model server asks, since a revoke cannot stop a running thread."""
    status = session.scalar(select(Run.status).where(Run.id == run_id))
    return status is None or status.terminal


# --- pieces of long speech ---------------------------------------------------


def create_pieces(session: Session, step_id: uuid.UUID, texts: Sequence[str]) -> list[int]:
    """Record the pieces of a step's text (once); the indexes still to synthesize."""
    for number, text in enumerate(texts):
        values = {"step_id": step_id, "index": number, "text": text, "status": PieceStatus.QUEUED}
        insert_ignoring_conflicts(session, StepPiece, values)
    session.execute(
        update(Step)
        .where(Step.id == step_id, Step.pieces_total.is_(None))
        .values(pieces_total=len(texts))
    )
    return list(
        session.scalars(
            select(StepPiece.index)
            .where(StepPiece.step_id == step_id, StepPiece.status != PieceStatus.SUCCEEDED)
            .order_by(StepPiece.index)
        )
    )


def start_piece(
    session: Session, step_id: uuid.UUID, piece: int, *, task_id: str, worker: str
) -> tuple[Attempt, str] | None:
    """Record an attempt at one piece; None when there is nothing to do.

    Nothing to do: the piece is already synthesized, or the step or run is finished
    (failed or cancelled). The attempt is a step attempt with `piece` set.
    """
    step = session.scalars(
        select(Step).where(Step.id == step_id).with_for_update()
    ).first()  # the lock numbers attempts one after the other
    row = session.get(StepPiece, (step_id, piece))
    if step is None or row is None or step.status.terminal:
        return None
    run_status = session.scalar(select(Run.status).where(Run.id == step.run_id))
    if row.status == PieceStatus.SUCCEEDED or run_status is None or run_status.terminal:
        return None
    number = session.scalar(
        select(func.coalesce(func.max(Attempt.number), 0)).where(Attempt.step_id == step_id)
    )
    attempt = Attempt(
        id=uuid.uuid4(), step_id=step_id, number=int(number or 0) + 1, task_id=task_id,
        worker=worker, status=AttemptStatus.RUNNING, started_at=utc_now(), piece=piece,
    )  # fmt: skip
    session.add(attempt)
    row.status = PieceStatus.RUNNING
    session.flush()
    return attempt, row.text


def finish_piece(
    session: Session, step_id: uuid.UUID, piece: int, *, sha256: str, ttft_ms: float | None
) -> bool:
    """Mark a piece synthesized and count it, once; True if the join is now due.

    The count is one UPDATE ... RETURNING on the step's row: concurrent pieces are
    serialized by its row lock, so exactly one of them reads the final count.
    """
    marked = session.execute(
        update(StepPiece)
        .where(
            StepPiece.step_id == step_id,
            StepPiece.index == piece,
            StepPiece.status != PieceStatus.SUCCEEDED,
        )
        .values(
            status=PieceStatus.SUCCEEDED,
            sha256=sha256,
            ttft_ms=ttft_ms,
            finished_at=utc_now(),
            error=None,
        )
    )
    if cast(CursorResult[Any], marked).rowcount != 1:
        # Counted by an earlier delivery, which may have died before publishing
        # the join: say whether the join is still due.
        return pieces_ready(session, step_id)
    counted = session.execute(
        update(Step)
        .where(Step.id == step_id)
        .values(pieces_done=Step.pieces_done + 1)
        .returning(Step.pieces_done, Step.pieces_total)
    ).one()
    return counted.pieces_total is not None and counted.pieces_done >= counted.pieces_total


def pieces_ready(session: Session, step_id: uuid.UUID) -> bool:
    """Whether every piece is synthesized and the step still waits for its join."""
    step = session.get(Step, step_id, populate_existing=True)
    if step is None or step.status.terminal or step.pieces_total is None:
        return False
    return step.pieces_done >= step.pieces_total


def fail_piece(session: Session, step_id: uuid.UUID, piece: int, error: str) -> None:
    """Mark a piece failed (it will not be retried any more)."""
    session.execute(
        update(StepPiece)
        .where(StepPiece.step_id == step_id, StepPiece.index == piece)
        .values(status=PieceStatus.FAILED, error=error, finished_at=utc_now())
    )


def piece_rows(session: Session, step_id: uuid.UUID) -> list[StepPiece]:
    """A step's pieces, in order."""
    return list(
        session.scalars(
            select(StepPiece).where(StepPiece.step_id == step_id).order_by(StepPiece.index)
        )
    )
