"""What a task holds around its call to a model server: its ticket and lease.

`admit_at_once` tries the gate once, with no SQL; `execution.admit` is the whole
admission (it waits, records why, or fails the step) and builds on the pieces here:
this thread's `Ticket`, the process's `Gate`, and `wait_then_retry`, which hands the
message back with a countdown (Celery's retry, at the run's priority). `call_slot`
wraps the call itself and gives the lease back the moment the call ends, so the next
waiter starts at once; a signal handler releases whatever a task left held.
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
from celery.signals import task_postrun

from sparkjobs.dispatch.gate import Gate, ServerUnavailable
from sparkjobs.dispatch.leases import Lease
from sparkjobs.dispatch.retry import CELERY_MAX_RETRIES
from sparkjobs.dispatch.standing import Standing
from sparkjobs.dispatch.waits import Wait, record_wait
from sparkjobs.store.engine import shared_sessions
from sparkjobs.store.runs import utc_now

if TYPE_CHECKING:
    from sparkjobs.broker.app import SparkjobsApp

log = logging.getLogger(__name__)

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


def set_current(ticket: Ticket | None) -> None:
    """Make `ticket` the admission of the task this thread runs (None: not admitted)."""
    _current.ticket = ticket


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
    app = cast("SparkjobsApp", task.app)
    with shared_sessions(app.sparkjobs_config.database).begin() as session:
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
