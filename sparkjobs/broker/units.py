"""Units of work: the one message an unfinished run needs next, named the same everywhere.

A unit is a step message, a piece of long speech, or a join. Workers name the units they
hold (from a message's kwargs), the reconciler names the units runs are waiting for
(from SQL) and the units sitting in queues (from Redis), and compares the names.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from sparkjobs.broker.kombu_private import stored_message
from sparkjobs.broker.publish import JOIN_TASK, PIECE_TASK, STEP_TASK
from sparkjobs.store.models import PieceStatus, Run, Status, Step, StepPiece

TASKS = frozenset({STEP_TASK, PIECE_TASK, JOIN_TASK})
ACTIVE = (Status.QUEUED, Status.RUNNING)


@dataclass(frozen=True, order=True)
class Unit:
    """One message's worth of work: `task` on step `index` of a run (and a piece)."""

    task: str
    run_id: uuid.UUID
    index: int
    piece: int | None = None

    @property
    def key(self) -> str:
        """The unit's name in Redis claims, e.g. "sparkjobs.step:<run>:1"."""
        tail = "" if self.piece is None else f":{self.piece}"
        return f"{self.task}:{self.run_id}:{self.index}{tail}"

    @classmethod
    def parse(cls, key: str | bytes) -> Unit | None:
        """The unit named `key` (its `key`); None for a name that is not a unit's."""
        text = key.decode() if isinstance(key, bytes) else key
        parts = text.split(":")
        if len(parts) not in (3, 4) or parts[0] not in TASKS:
            return None
        try:
            piece = int(parts[3]) if len(parts) == 4 else None
            return cls(parts[0], uuid.UUID(parts[1]), int(parts[2]), piece)
        except ValueError:
            return None

    @classmethod
    def of_task(cls, task: str | None, kwargs: Mapping[str, Any] | None) -> Unit | None:
        """The unit a task message carries; None for other tasks (ping) or odd kwargs."""
        if task not in TASKS or not kwargs:
            return None
        try:
            piece = kwargs.get("piece") if task == PIECE_TASK else None
            return cls(
                str(task),
                uuid.UUID(str(kwargs["run_id"])),
                int(kwargs["index"]),
                None if piece is None else int(piece),
            )
        except (KeyError, TypeError, ValueError):
            return None


@dataclass(frozen=True)
class PendingUnit:
    """A unit an unfinished run waits for, with what republishing it needs."""

    unit: Unit
    step_id: uuid.UUID
    service: str
    interactive: bool


def decode_message(raw: bytes | str) -> Unit | None:
    """The unit of a kombu message as the Redis transport stores it; None if not ours."""
    try:
        headers, body = stored_message(raw)
        decoded = json.loads(body)
        kwargs = decoded[1] if isinstance(decoded, list) and len(decoded) > 1 else None
    except (ValueError, KeyError, TypeError, IndexError):
        return None
    return Unit.of_task(headers.get("task"), kwargs)


def pending_units(session: Session) -> list[PendingUnit]:
    """Every unit that an unfinished run waits for now.

    For each queued or running run, its first unfinished step: the step message itself
    until the step has split its text into pieces; then every unfinished piece; then,
    once every piece is synthesized, the join.
    """
    rows = session.execute(
        select(Step.run_id, Step.index, Step.id, Step.service, Step.pieces_total,
               Step.pieces_done, Run.interactive)
        .join(Run, Run.id == Step.run_id)
        # Unfinished steps first: the partial index `ix_steps_unfinished` holds them.
        .where(Step.finished_at.is_(None), Step.status.in_(ACTIVE), Run.status.in_(ACTIVE))
        .order_by(Step.run_id, Step.index)
    ).all()  # fmt: skip
    current: dict[uuid.UUID, Any] = {}
    for row in rows:
        current.setdefault(row.run_id, row)  # the lowest unfinished step of each run
    split = [row.id for row in current.values() if row.pieces_total is not None]
    open_pieces: dict[uuid.UUID, list[int]] = {}
    if split:
        for step_id, piece in session.execute(
            select(StepPiece.step_id, StepPiece.index)
            .where(StepPiece.step_id.in_(split), StepPiece.status != PieceStatus.SUCCEEDED)
            .order_by(StepPiece.step_id, StepPiece.index)
        ).all():
            open_pieces.setdefault(step_id, []).append(piece)
    units: list[PendingUnit] = []
    for row in current.values():
        interactive = bool(row.interactive)
        if row.pieces_total is None:
            units.append(_pending(STEP_TASK, row, None, interactive))
        elif row.pieces_done >= row.pieces_total:
            units.append(_pending(JOIN_TASK, row, None, interactive))
        else:
            units.extend(
                _pending(PIECE_TASK, row, p, interactive) for p in open_pieces.get(row.id, ())
            )
    return units


def _pending(task: str, row: Any, piece: int | None, interactive: bool) -> PendingUnit:
    return PendingUnit(Unit(task, row.run_id, row.index, piece), row.id, row.service, interactive)


def keys(units: Iterable[Unit]) -> set[str]:
    return {unit.key for unit in units}
