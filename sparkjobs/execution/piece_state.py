"""The SQL of a long speak step's pieces: recorded once, started, counted, failed.

A step whose text is longer than one piece records its pieces, and each piece task
records its attempt and its outcome here; the last piece to be counted makes the join
due. Every write is keyed and guarded, as in `sparkjobs.execution.state`: a task that
runs twice counts its piece once. Functions take the caller's session.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.orm import Session

from sparkjobs.store import statements
from sparkjobs.store.keyed import insert_ignoring_conflicts, named_params
from sparkjobs.store.models import (
    Attempt,
    AttemptStatus,
    PieceStatus,
    Run,
    Status,
    Step,
    StepPiece,
)
from sparkjobs.store.runs import utc_now

if TYPE_CHECKING:
    from sparkjobs.store.direct import Executor


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
    session: Session,
    step_id: uuid.UUID,
    piece: int,
    *,
    sha256: str,
    ttft_ms: float | None,
    text: str | None = None,
) -> bool:
    """Mark a piece synthesized and count it, once; True if the join is now due.

    `text`: what was synthesized. A piece whose text changed meanwhile (a chat streamed
    into the step was generated again, `place_pieces`) is not marked: its new text is
    queued already.

    The count is one UPDATE ... RETURNING on the step's row, locked first (the order
    `place_pieces` and `start_piece` lock in): concurrent pieces are serialized by it,
    so exactly one of them reads the final count.
    """
    session.execute(select(Step.id).where(Step.id == step_id).with_for_update())
    conditions = [
        StepPiece.step_id == step_id,
        StepPiece.index == piece,
        StepPiece.status != PieceStatus.SUCCEEDED,
    ]
    if text is not None:
        conditions.append(StepPiece.text == text)
    marked = session.execute(
        update(StepPiece)
        .where(*conditions)
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


def place_pieces(
    session: Session,
    step_id: uuid.UUID,
    texts: Sequence[str],
    *,
    first: int = 0,
    total: int | None = None,
) -> list[int] | None:
    """Set the text of pieces `first`, `first + 1`, ... of a step; the ones to synthesize.

    For a speak step fed by a chat that is still generating (`sparkjobs.execution.
    handoff`): a piece whose text is unchanged keeps its audio (or its queued message);
    a new or changed piece reuses the audio of a piece of the same text, else it is
    queued again. With `total` (the whole text is known), the pieces from `total` on
    are dropped and the count is fixed, which makes the join due once all are made.
    The step is marked running from its first piece.

    Returns:
        The indexes to queue, in order; None when the step is finished (or cancelled).
    """
    step = session.scalars(select(Step).where(Step.id == step_id).with_for_update()).first()
    if step is None or step.status.terminal:
        return None
    rows = {row.index: row for row in piece_rows(session, step_id)}
    spoken = {row.text: row for row in rows.values() if row.status == PieceStatus.SUCCEEDED}
    now = utc_now()
    todo: list[int] = []
    for number, text in enumerate(texts, start=first):
        row = rows.get(number)
        if row is not None and row.text == text:
            continue
        if row is None:
            row = StepPiece(step_id=step_id, index=number)
            session.add(row)
        same = spoken.get(text)
        row.text, row.error = text, None
        row.status = PieceStatus.SUCCEEDED if same else PieceStatus.QUEUED
        row.sha256 = same.sha256 if same else None
        row.ttft_ms = same.ttft_ms if same else None
        row.finished_at = now if same else None
        if same is None:
            todo.append(number)
    if total is not None:
        for number, row in rows.items():
            if number >= total:
                session.delete(row)
        step.pieces_total = total
    session.flush()
    step.pieces_done = int(
        session.scalar(
            select(func.count()).where(
                StepPiece.step_id == step_id, StepPiece.status == PieceStatus.SUCCEEDED
            )
        )
        or 0
    )
    if step.status == Status.QUEUED:
        step.status, step.started_at = Status.RUNNING, step.started_at or now
    return todo


def spoken_in_one_piece(session: Executor, step_id: uuid.UUID) -> None:
    """Count a speak step whose text was one piece, spoken by the step itself (no piece
    rows, no join): one piece of one, as `show` reports it."""
    session.execute(statements.one_piece(), named_params(id=step_id))


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
