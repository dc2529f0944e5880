"""What a task does before and around its call to a model server.

`admit` runs first in a task: it reads the step's `Standing` (or takes the one the
step's own first query read), asks the gate, and either returns with a lease held by
this thread or records why the step waits and hands the message back with a
countdown (Celery's retry, at the run's priority). A step that makes no one call of
its own (custom) is admitted without the gate: no read of Redis. `call_slot` wraps the
call itself and gives the lease back the moment the call ends, so the next waiter
starts at once; a signal handler releases whatever a task left held.
"""

from __future__ import annotations

import functools
import logging
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from celery import Task
from celery.exceptions import Ignore
from celery.signals import task_postrun
from sqlalchemy import func, select

from sparkjobs.dispatch.gate import Gate, ServerUnavailable
from sparkjobs.dispatch.leases import Lease
from sparkjobs.dispatch.retry import CELERY_MAX_RETRIES
from sparkjobs.dispatch.waits import Wait, WaitKind, clear_wait, kind_of, record_wait
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
    from sqlalchemy.orm import Session

    from sparkjobs.broker.app import SparkjobsApp

log = logging.getLogger(__name__)

# Step kinds whose one call the gate admits (custom steps make their own calls). A
# speak step speaks one piece itself; longer text gives the lease back at once and
# fans out into pieces that are admitted one by one.
GATED_KINDS = frozenset({"chat", "clone", "speak"})
INTERACTIVE_PRIORITY = 0  # Redis priorities: 0 is the highest
BACKGROUND_PRIORITY = 6


@dataclass
class Ticket:
    """The admission of the task running in this thread."""

    service: str
    step_id: uuid.UUID
    interactive: bool
    failures: int  # failed attempts so far (of this piece, for a piece)
    gate: Gate
    lease: Lease | None = None


_current = threading.local()


def current_ticket() -> Ticket | None:
    """The admission of the task this thread runs, if it was admitted."""
    return cast(Ticket | None, getattr(_current, "ticket", None))


@functools.lru_cache(maxsize=8)
def _gate(app: SparkjobsApp) -> Gate:
    return Gate(app.sparkjobs_config, app.redis)


def gate_of(app: SparkjobsApp) -> Gate:
    """This process's gate for `app` (one per app, shared by its threads)."""
    return _gate(app)


def priority(interactive: bool) -> int:
    return INTERACTIVE_PRIORITY if interactive else BACKGROUND_PRIORITY


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


def admit(
    task: Task[Any, Any],
    run_id: str,
    index: int,
    service: str,
    *,
    piece: int | None = None,
    standing: Standing | None = None,
) -> None:
    """Let the task call `service` now (a lease is held), or make it wait.

    Args:
        standing: the step as the caller just read it (`start_step` reads it with
            the step's start); default: read here.

    Raises:
        celery.exceptions.Retry: the step waits; its reason is recorded.
        celery.exceptions.Ignore: the server stayed down past the wait deadline;
            the step (and run) are failed in SQL with an error naming the server.
    """
    from sparkjobs.broker.notify import announce_finished
    from sparkjobs.execution.piece_state import fail_piece
    from sparkjobs.execution.state import fail_step, sessions_for
    from sparkjobs.store.engine import reading

    app = cast("SparkjobsApp", task.app)
    _current.ticket = None
    sessions = sessions_for(app.sparkjobs_config.database)
    run = uuid.UUID(run_id)
    row = standing
    if row is None:
        with reading(sessions) as session:
            row = read_standing(session, run, index, piece)
    if row is None or row.status.terminal:
        return  # the task's own code says what to do with a missing or finished step
    failures = row.failures
    gate = gate_of(app)
    ticket = Ticket(service, row.step_id, row.interactive, failures, gate)
    _current.ticket = ticket
    kind = row.kind
    if not row.gated(piece):
        return
    waiter = f"{run_id}:{index}:{'' if piece is None else piece}"
    health_since = row.waiting_since if kind_of(row.waiting_for) is WaitKind.HEALTH else None
    try:
        answer = gate.check(service, waiter=waiter, interactive=ticket.interactive,
                            health_wait_since=health_since, now=utc_now())  # fmt: skip
    except ServerUnavailable as exc:
        error = f"step {index} ({kind} on {service}): {exc}"
        with sessions.begin() as session:
            if piece is not None:
                fail_piece(session, row.step_id, piece, error)
            fail_step(session, run, row.step_id, error)
        announce_finished(app.sparkjobs_config, app.announcer, run, "failed")
        log.error("%s", error)
        raise Ignore() from exc
    if isinstance(answer, Lease):
        ticket.lease = answer
        if row.waiting_for is not None:
            with sessions.begin() as session:
                clear_wait(session, row.step_id)
        return
    wait_then_retry(task, ticket, answer)


def admit_at_once(
    task: Task[Any, Any], run_id: str, index: int, service: str, standing: Standing
) -> bool:
    """One try of the gate, with no SQL and no waiting: True when a lease is now held.

    For a step task's prologue, which calls this inside the transaction that read
    `standing` and, on True, opens the attempt (and clears the step's wait) in that
    same transaction. False leaves nothing behind but this thread's ticket: the
    caller leaves its transaction and calls `admit`, which waits, records why, or
    fails the step, as the gate's answer says.
    """
    app = cast("SparkjobsApp", task.app)
    _current.ticket = None
    if standing.status.terminal or not standing.gated():
        return False
    gate = gate_of(app)
    ticket = Ticket(service, standing.step_id, standing.interactive, standing.failures, gate)
    waiter = f"{run_id}:{index}:"
    try:
        answer = gate.check(service, waiter=waiter, interactive=ticket.interactive,
                            health_wait_since=None, now=utc_now(), poll=False)  # fmt: skip
    except ServerUnavailable:  # not raised without a wait start; `admit` decides
        return False
    if not isinstance(answer, Lease):
        return False
    ticket.lease = answer
    _current.ticket = ticket
    return True


def wait_then_retry(task: Task[Any, Any], ticket: Ticket, wait: Wait) -> None:
    """Record `wait` on the ticket's step and hand the message back with its countdown."""
    from sparkjobs.execution.state import sessions_for

    app = cast("SparkjobsApp", task.app)
    with sessions_for(app.sparkjobs_config.database).begin() as session:
        record_wait(session, ticket.step_id, wait)
    raise task.retry(countdown=wait.delay_s, max_retries=CELERY_MAX_RETRIES,
                     priority=priority(ticket.interactive))  # fmt: skip


@contextmanager
def call_slot() -> Iterator[None]:
    """Around the call to the server: the lease is given back as soon as it ends."""
    try:
        yield
    finally:
        release_current()


def release_current() -> None:
    """Give back the lease this thread's task holds, if any."""
    ticket = current_ticket()
    if ticket is None or ticket.lease is None:
        return
    lease, ticket.lease = ticket.lease, None
    try:
        ticket.gate.release(lease)
    except Exception:  # the TTL frees it anyway
        log.warning("could not release a lease of %s", lease.service, exc_info=True)


@task_postrun.connect(weak=False)
def _after_task(**_: Any) -> None:
    # A task that raised before its call (or never reached it) must not keep a slot.
    release_current()
    _current.ticket = None
