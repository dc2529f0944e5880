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
from celery.exceptions import Ignore
from celery.signals import task_postrun

from sparkjobs.broker.publish import PIECE_TASK, RESERVED_HEADER, STEP_TASK
from sparkjobs.broker.units import Unit
from sparkjobs.dispatch import handoff
from sparkjobs.dispatch.gate import Gate, ServerUnavailable
from sparkjobs.dispatch.handoff import announce_waiting, publish_handed
from sparkjobs.dispatch.leases import Lease
from sparkjobs.dispatch.retry import CELERY_MAX_RETRIES
from sparkjobs.dispatch.standing import GATED_KINDS, Standing
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
    unit: str = ""  # the unit of work's key: its name in the service's line
    claimed: bool = False  # it took a lease (the one reserved for it, if there was one)


_current = threading.local()


def set_current(ticket: Ticket | None) -> None:
    """Make `ticket` the admission of the task this thread runs (None: not admitted)."""
    _current.ticket = ticket


def current_ticket() -> Ticket | None:
    """The admission of the task this thread runs, if it was admitted."""
    return cast(Ticket | None, getattr(_current, "ticket", None))


@functools.lru_cache(maxsize=8)
def _gate(app: SparkjobsApp) -> Gate:
    # A slot this process frees or finds is handed on: it publishes the units handed it.
    return Gate(app.sparkjobs_config, app.redis, hand=functools.partial(publish_handed, app))


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
    unit = unit_of(run_id, index, None)
    ticket = Ticket(service, standing.step_id, standing.interactive, standing.failures, gate,
                    unit=unit)  # fmt: skip
    try:
        answer = gate.check(service, unit=unit, interactive=ticket.interactive,
                            health_wait_since=None, now=utc_now(), join=False)  # fmt: skip
    except ServerUnavailable:  # not raised without a wait start; `admit` decides
        return False
    if not isinstance(answer, Lease):
        return False
    ticket.lease, ticket.claimed = answer, True
    _current.ticket = ticket
    return True


def unit_of(run_id: str | uuid.UUID, index: int, piece: int | None) -> str:
    """The key of a step's (or a piece's) unit of work, as its messages name it."""
    task = STEP_TASK if piece is None else PIECE_TASK
    return Unit(task, uuid.UUID(str(run_id)), index, piece).key


def wait_then_retry(task: Task[Any, Any], ticket: Ticket, wait: Wait) -> None:
    """Record `wait` on the ticket's step, then leave: in the service's line the unit
    waits as no message at all (its message is acknowledged, and published again when
    a slot is handed to it); any other wait hands the message back with its countdown.

    Raises:
        celery.exceptions.Ignore: the unit waits in line.
        celery.exceptions.Retry: the message comes back after `wait.delay_s`.
    """
    app = cast("SparkjobsApp", task.app)
    with shared_sessions(app.sparkjobs_config.database).begin() as session:
        record_wait(session, ticket.step_id, wait)
    if wait.place is not None:
        announce_waiting(ticket.gate, ticket.unit, ticket.service, wait.place)
        raise Ignore()
    raise task.retry(countdown=wait.delay_s, max_retries=CELERY_MAX_RETRIES,
                     priority=priority(ticket.interactive))  # fmt: skip


def interactive_now(app: SparkjobsApp) -> bool:
    """Whether the task this thread runs is interactive work: its ticket says, else its
    message's priority (0, the highest, is interactive work's)."""
    ticket = current_ticket()
    if ticket is not None:
        return ticket.interactive
    request = getattr(app.current_worker_task, "request", None)
    info = getattr(request, "delivery_info", None) or {}
    return bool(info.get("priority") == INTERACTIVE_PRIORITY)


def send_step(
    app: SparkjobsApp, run_id: uuid.UUID, index: int, service: str, *, kind: str | None,
    interactive: bool | None = None, **label: Any,
) -> bool:  # fmt: skip
    """Publish step `index` of a run, or leave it in its service's line (a kind that
    calls the server); `interactive`: default the running task's. True: published."""
    interactive = interactive_now(app) if interactive is None else interactive
    unit = Unit(STEP_TASK, run_id, index)
    return send(app, unit, service, interactive=interactive, gated=kind in GATED_KINDS,
                kind=kind, **label)  # fmt: skip


def send_piece(
    app: SparkjobsApp, run_id: uuid.UUID, index: int, piece: int, service: str, **label: Any
) -> bool:
    """Publish one piece of a long speech, or leave it in its service's line."""
    unit = Unit(PIECE_TASK, run_id, index, piece)
    return send(app, unit, service, interactive=interactive_now(app), gated=True, **label)


def send(
    app: SparkjobsApp, unit: Unit, service: str, *, interactive: bool, gated: bool, **label: Any
) -> bool:
    """Publish `unit` now if a slot is reserved for it (or it needs none), else leave it
    in its service's line (`sparkjobs.dispatch.handoff.send`). True when published."""
    return handoff.send(app, gate_of(app), unit, service, interactive=interactive,
                        gated=gated, **label)  # fmt: skip


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
def _after_task(task: Task[Any, Any] | None = None, kwargs: Any = None, **_: Any) -> None:
    # A task that raised before its call (or never reached it) must not keep a slot,
    # nor the one reserved for it that it never claimed.
    ticket = current_ticket()
    release_current()
    _current.ticket = None
    headers = getattr(getattr(task, "request", None), "headers", None) or {}
    unit = headers.get(RESERVED_HEADER)
    if not unit or task is None or (ticket is not None and ticket.claimed):
        return
    service = (kwargs or {}).get("service")
    try:
        if isinstance(service, str):
            gate_of(cast("SparkjobsApp", task.app)).give_back(service, str(unit))
    except Exception:  # the reservation's TTL frees it anyway
        log.warning("could not give back the slot reserved for %s", unit, exc_info=True)
