"""What a task does before and around its call to a model server.

`admit` runs first in a task: it reads the step, asks the gate, and either returns
with a lease held by this thread or records why the step waits and hands the message
back with a countdown (Celery's retry, at the run's priority). `call_slot` wraps the
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
from typing import TYPE_CHECKING, Any, cast

from celery import Task
from celery.exceptions import Ignore
from celery.signals import task_postrun
from sqlalchemy import func, select

from sparkjobs.dispatch.gate import Gate, ServerUnavailable
from sparkjobs.dispatch.leases import Lease
from sparkjobs.dispatch.waits import Wait, WaitKind, clear_wait, kind_of, record_wait
from sparkjobs.execution.retry import CELERY_MAX_RETRIES
from sparkjobs.store.models import Attempt, AttemptStatus, PieceStatus, Run, Step, StepPiece
from sparkjobs.store.runs import utc_now

if TYPE_CHECKING:
    from sparkjobs.app import SparkjobsApp

log = logging.getLogger(__name__)

# Step kinds whose one call the gate admits (custom steps make their own calls,
# a speak step fans out into pieces that are admitted one by one).
GATED_KINDS = frozenset({"chat", "clone"})
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


def admit(
    task: Task[Any, Any], run_id: str, index: int, service: str, *, piece: int | None = None
) -> None:
    """Let the task call `service` now (a lease is held), or make it wait.

    Raises:
        celery.exceptions.Retry: the step waits; its reason is recorded.
        celery.exceptions.Ignore: the server stayed down past the wait deadline;
            the step (and run) are failed in SQL with an error naming the server.
    """
    from sparkjobs.execution.state import fail_piece, fail_step, sessions_for

    app = cast("SparkjobsApp", task.app)
    _current.ticket = None
    sessions = sessions_for(app.sparkjobs_config.database)
    run = uuid.UUID(run_id)
    with sessions() as session:
        row = session.execute(
            select(Step.id, Step.status, Step.spec, Step.waiting_for, Step.waiting_since,
                   Run.interactive)
            .join(Run, Run.id == Step.run_id)
            .where(Step.run_id == run, Step.index == index)
        ).first()  # fmt: skip
        if row is None or row.status.terminal:
            return  # the task's own code says what to do with a missing or finished step
        which = Attempt.piece.is_(None) if piece is None else Attempt.piece == piece
        failures = int(
            session.scalar(
                select(func.count()).where(
                    Attempt.step_id == row.id, Attempt.status == AttemptStatus.FAILED, which
                )
            )
            or 0
        )
        if piece is not None:
            piece_status = session.scalar(
                select(StepPiece.status).where(StepPiece.step_id == row.id,
                                               StepPiece.index == piece)
            )  # fmt: skip
            if piece_status in (PieceStatus.SUCCEEDED, PieceStatus.FAILED):
                return
    gate = gate_of(app)
    ticket = Ticket(service, row.id, bool(row.interactive), failures, gate)
    _current.ticket = ticket
    kind = str((row.spec or {}).get("kind", "custom"))
    if piece is None and kind not in GATED_KINDS:
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
                fail_piece(session, row.id, piece, error)
            fail_step(session, run, row.id, error)
        log.error("%s", error)
        raise Ignore() from exc
    if isinstance(answer, Lease):
        ticket.lease = answer
        if row.waiting_for is not None:
            with sessions.begin() as session:
                clear_wait(session, row.id)
        return
    wait_then_retry(task, ticket, answer)


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
