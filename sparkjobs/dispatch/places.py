"""Where a run's waiting work stands in its service's line, and when it may start.

A unit in line (`sparkjobs.dispatch.leases`) is known to Redis alone: a step or piece
that joined the line before its message was published has no wait in SQL. So a run's
places are read from the lines themselves: for each unfinished step of a gated
service, its step's unit and its pieces' units are looked up in the service's line.

The expected start is arithmetic on what is known, and omitted when it is not: the
units ahead (a piece counts one, like a step) plus the unit itself, each taking the
service's recent typical call, spread over its slots. The typical call is the median
duration of the successful calls (steps spoken or asked in one call, and pieces) of
the service's most recently finished steps, from the attempts in SQL.
"""

from __future__ import annotations

import math
import statistics
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import or_, select

from sparkjobs.broker.publish import PIECE_TASK, STEP_TASK
from sparkjobs.broker.units import Unit
from sparkjobs.dispatch.waits import ordinal
from sparkjobs.store.models import Attempt, AttemptStatus, Step

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from sparkjobs.config import Config
    from sparkjobs.dispatch.leases import Leases
    from sparkjobs.store.models import Run

RECENT_STEPS = 20  # the finished steps whose calls make a service's recent speed
RECENT_CALLS = 50  # at most this many of their calls


def expected_wait_s(ahead: int, limit: int, typical_s: float | None) -> float | None:
    """Seconds until a unit with `ahead` units before it in line starts, on a service
    with `limit` slots whose calls take `typical_s`: the units ahead and the call that
    frees its slot, `limit` at a time. None when the typical call is unknown."""
    if typical_s is None or ahead < 0:
        return None
    return (ahead + 1) * typical_s / max(1, limit)


def about(seconds: float) -> str:
    """A rough duration for people: "about 40 s", "about 3 min", "about 1.5 h"."""
    if seconds < 60:
        return f"about {max(1, round(seconds))} s"
    if seconds < 3600:
        return f"about {round(seconds / 60)} min"
    return f"about {seconds / 3600:.1f} h"


@dataclass(frozen=True)
class StepPlace:
    """Where a step's next unit stands in its service's line."""

    service: str
    place: int  # 0-based: units ahead of the step's first unit in line
    length: int  # units in the line
    units: int  # the step's own units in line (its pieces, or the step)
    pieces_total: int | None = None  # a long speech split into pieces
    pieces_done: int = 0
    expected_start_s: float | None = None

    @property
    def split(self) -> bool:
        return self.pieces_total is not None and self.pieces_total > 1

    def describe(self) -> str:
        """E.g. "3rd in line for orpheus, expected to start in about 40 s", or for a
        long speech "pieces 3/10, next piece 2nd in line for orpheus"."""
        where = f"{ordinal(self.place + 1)} in line for {self.service}"
        if self.split:
            where = f"pieces {self.pieces_done}/{self.pieces_total}, next piece {where}"
        if self.expected_start_s is None:
            return where
        return f"{where}, expected to start in {about(self.expected_start_s)}"

    def as_json(self) -> dict[str, Any]:
        """The `line` object of a step in `sparkjobs show --json` (docs/cli.md)."""
        return {
            "service": self.service,
            "place": self.place + 1,
            "ahead": self.place,
            "length": self.length,
            "units": self.units,
            "expected_start_s": None if self.expected_start_s is None
            else round(self.expected_start_s, 1),
            "text": self.describe(),
        }  # fmt: skip


def typical_call_s(session: Session, service: str) -> float | None:
    """The median duration of `service`'s recent successful calls; None without any.

    A call is the attempt of a step that made one call, or of one piece; the attempt
    that only split a long text into pieces is no call.
    """
    recent = (
        select(Step.id)
        .where(Step.service == service, Step.finished_at.is_not(None))
        .order_by(Step.finished_at.desc())
        .limit(RECENT_STEPS)
        .scalar_subquery()
    )
    rows = session.execute(
        select(Attempt.started_at, Attempt.finished_at)
        .join(Step, Step.id == Attempt.step_id)
        .where(
            Attempt.step_id.in_(recent), Attempt.status == AttemptStatus.SUCCEEDED,
            Attempt.finished_at.is_not(None),
            or_(Attempt.piece.is_not(None), Step.pieces_total.is_(None), Step.pieces_total <= 1),
        )
        .order_by(Attempt.finished_at.desc())
        .limit(RECENT_CALLS)
    ).all()  # fmt: skip
    durations = [(end - start).total_seconds() for start, end in rows if end is not None]
    durations = [d for d in durations if math.isfinite(d) and d >= 0]
    return statistics.median(durations) if durations else None


def step_places(config: Config, session: Session, leases: Leases, run: Run) -> dict[int, StepPlace]:
    """The place in line of each unfinished step of `run` with a unit in line, by index.

    One read of each line the run's steps wait in, and one of SQL per such service.
    """
    waiting = [s for s in run.steps if not s.status.terminal and s.service in config.services]
    found: dict[int, StepPlace] = {}
    lines: dict[str, dict[str, int]] = {}
    speeds: dict[str, float | None] = {}
    for step in waiting:
        if step.service not in lines:
            lines[step.service] = {u: n for n, u in enumerate(leases.lined(step.service))}
        line = lines[step.service]
        if not line:
            continue
        ranks = [line[u] for u in _units(run.id, step.index, step.pieces_total) if u in line]
        if not ranks:
            continue
        if step.service not in speeds:
            speeds[step.service] = typical_call_s(session, step.service)
        place = min(ranks)
        limit = config.services[step.service].in_flight_limit
        found[step.index] = StepPlace(
            step.service, place, len(line), len(ranks), step.pieces_total,
            int(step.pieces_done or 0), expected_wait_s(place, limit, speeds[step.service]),
        )  # fmt: skip
    return found


def _units(run_id: uuid.UUID, index: int, pieces: int | None) -> Iterable[str]:
    # As `sparkjobs.dispatch.admission.unit_of` names them.
    yield Unit(STEP_TASK, run_id, index).key
    for piece in range(pieces or 0):
        yield Unit(PIECE_TASK, run_id, index, piece).key
