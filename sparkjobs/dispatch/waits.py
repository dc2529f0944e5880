"""Why a step is waiting: recorded on its row, so `show` and the run page can say it.

A wait has a kind (a lease, a server's health, backpressure, a retry delay) and a
sentence; `steps.waiting_for` holds "kind: sentence" and `steps.waiting_since` when a
wait of that kind began. Writes happen only when the kind or sentence changes, so a
step that waits for a lease many times over costs one UPDATE, not one per try.
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Table, select, update

from sparkjobs.store.keyed import typed_param
from sparkjobs.store.models import Status, Step
from sparkjobs.store.runs import utc_now

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from sparkjobs.store.direct import Executor


class WaitKind(StrEnum):
    LEASE = "lease"
    HEALTH = "health"
    BACKPRESSURE = "backpressure"
    RETRY = "retry"


@dataclass(frozen=True)
class Wait:
    """One reason to wait, and how long until the next try."""

    kind: WaitKind
    text: str
    delay_s: float
    place: int | None = None  # a lease wait's 0-based place in its service's line

    @property
    def line(self) -> str:
        return f"{self.kind.value}: {self.text}"


def ordinal(number: int) -> str:
    """1st, 2nd, 3rd, 4th, 11th, 12th, 13th, 21st ..."""
    suffix = (
        "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    )
    return f"{number}{suffix}"


def in_line(service: str, place: int | None, limit: int) -> str:
    """A lease wait for people: "waiting for orpheus (4th in line)"."""
    if place is None:
        return f"all {limit} slot(s) of {service} are in use"
    return f"waiting for {service} ({ordinal(place + 1)} in line)"


def kind_of(waiting_for: str | None) -> WaitKind | None:
    """The kind of a recorded wait ("lease: ..." is a lease wait)."""
    if not waiting_for:
        return None
    head = waiting_for.split(":", 1)[0]
    try:
        return WaitKind(head)
    except ValueError:
        return None


def wait_reason(step: Step) -> str | None:
    """What a queued or retrying step waits for, for people; None when it does not wait.

    E.g. "lease: all 8 slots of gemma are in use (since 12:00:03 UTC)", or
    "health: gemma (http://...) is down for 42 s: connection refused (since ...)".
    The CLI's `show` and the run page print this.
    """
    if step.status.terminal or not step.waiting_for:
        return None
    since = step.waiting_since
    when = f" (since {since:%H:%M:%S} UTC)" if since is not None else ""
    return f"{step.waiting_for}{when}"


def record_wait(
    session: Session, step_id: uuid.UUID, wait: Wait, *, now: datetime | None = None
) -> datetime:
    """Record that the step waits for `wait`; returns since when it waits for that kind."""
    now = now or utc_now()
    row = session.execute(
        select(Step.waiting_for, Step.waiting_since, Step.status).where(Step.id == step_id)
    ).first()
    if row is None or row.status.terminal:
        return now
    same_kind = kind_of(row.waiting_for) == wait.kind and row.waiting_since is not None
    since = row.waiting_since if same_kind and row.waiting_since is not None else now
    if row.waiting_for != wait.line or not same_kind:
        session.execute(
            update(Step)
            .where(Step.id == step_id, Step.status.in_([Status.QUEUED, Status.RUNNING]))
            .values(waiting_for=wait.line, waiting_since=since)
        )
    return since


def clear_wait(session: Executor, step_id: uuid.UUID) -> None:
    """The step stopped waiting (it got its lease, or finished)."""
    session.execute(_clear_wait(), {"p_id": step_id})


@functools.cache
def _clear_wait() -> Any:
    steps = cast(Table, Step.__table__)
    return (
        update(steps)
        .where(steps.c.id == typed_param(steps, "id"), steps.c.waiting_for.is_not(None))
        .values(waiting_for=None, waiting_since=None)
    )
