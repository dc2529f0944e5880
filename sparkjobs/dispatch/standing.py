"""A step's standing: what admission reads of it (state, kind, wait, priority and
failures), in one query, or as columns a caller's own query adds."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from sparkjobs.store.models import Attempt, AttemptStatus, PieceStatus, Run, Status, Step, StepPiece

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

# Step kinds whose one call the gate admits (custom steps make their own calls). A
# speak step speaks one piece itself; longer text gives the lease back at once and
# fans out into pieces that are admitted one by one.
GATED_KINDS = frozenset({"chat", "clone", "speak"})


@dataclass(frozen=True)
class Standing:
    """What admission reads of a step: its state, kind, wait, priority and failures."""

    step_id: uuid.UUID
    status: Status
    kind: str
    waiting_for: str | None
    waiting_since: datetime | None
    interactive: bool
    failures: int  # failed attempts so far (of this piece, for a piece)

    def gated(self, piece: int | None = None) -> bool:
        """Whether the gate must admit the task before its attempt (its one call)."""
        return piece is not None or self.kind in GATED_KINDS


def failures_of(step_id: Any, piece: int | None = None) -> Any:
    """A scalar subquery: the failed attempts of a step (or of one of its pieces)."""
    attempts = Attempt.__table__.c
    which = attempts.piece.is_(None) if piece is None else attempts.piece == piece
    return (
        select(func.count())
        .where(attempts.step_id == step_id, attempts.status == AttemptStatus.FAILED, which)
        .scalar_subquery()
    )


def standing_columns(piece: int | None = None) -> tuple[Any, ...]:
    """The columns a `Standing` is made of (the steps table joined with runs), to add
    to a query. Table columns, not ORM attributes: a query made of them skips the
    ORM's row handling, which every task would pay for."""
    steps, runs = Step.__table__.c, Run.__table__.c
    return (steps.id, steps.status, steps.spec, steps.waiting_for, steps.waiting_since,
            runs.interactive, failures_of(steps.id, piece).label("failures"))  # fmt: skip


def standing_of(row: Any) -> Standing:
    """The `Standing` in a row selected with `standing_columns`."""
    return Standing(
        step_id=row.id, status=row.status, kind=str((row.spec or {}).get("kind", "custom")),
        waiting_for=row.waiting_for, waiting_since=row.waiting_since,
        interactive=bool(row.interactive), failures=int(row.failures or 0),
    )  # fmt: skip


def read_standing(
    session: Session, run_id: uuid.UUID, index: int, piece: int | None = None
) -> Standing | None:
    """The standing of step `index` of a run, in one query; None: no such step, or
    (for a piece) the piece is already finished."""
    columns = standing_columns(piece)
    if piece is not None:
        status = select(StepPiece.status).where(
            StepPiece.step_id == Step.id, StepPiece.index == piece
        )
        columns = (*columns, status.scalar_subquery().label("piece_status"))
    row = session.execute(
        select(*columns)
        .join(Run, Run.id == Step.run_id)
        .where(Step.run_id == run_id, Step.index == index)
    ).first()
    if row is None:
        return None
    if piece is not None and row.piece_status in (PieceStatus.SUCCEEDED, PieceStatus.FAILED):
        return None
    return standing_of(row)
