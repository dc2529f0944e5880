"""Admitting a step task to its model server: the gate's answer acted on.

`admit` reads the step's `Standing` (or takes the one the step's own first query
read) and asks the gate. A lease: the task goes on with it held by this thread. A
wait: its reason is recorded and the message handed back with a countdown. A server
that stayed down past the step's deadline: the step (and its piece, and the run) are
failed here, in SQL, with an error naming the server. Dispatch decides; execution writes.
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Any, cast

from celery import Task
from celery.exceptions import Ignore

from sparkjobs.broker.notify import announce_finished
from sparkjobs.dispatch.admission import Ticket, gate_of, set_current, unit_of, wait_then_retry
from sparkjobs.dispatch.gate import ServerUnavailable
from sparkjobs.dispatch.leases import Lease
from sparkjobs.dispatch.standing import Standing, read_standing
from sparkjobs.dispatch.waits import WaitKind, clear_wait, kind_of
from sparkjobs.execution.context import sessions_for
from sparkjobs.execution.piece_state import fail_piece
from sparkjobs.execution.state import fail_step
from sparkjobs.store.engine import reading
from sparkjobs.store.runs import utc_now

if TYPE_CHECKING:
    from sparkjobs.broker.app import SparkjobsApp

log = logging.getLogger(__name__)


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
        celery.exceptions.Retry: the step waits for its server's health or load; its
            reason is recorded and its message comes back after a countdown.
        celery.exceptions.Ignore: the step waits in its service's line (its message
            is published again when a slot is handed to it), or the server stayed
            down past the wait deadline: the step (and run) are failed in SQL with an
            error naming the server.
    """
    app = cast("SparkjobsApp", task.app)
    set_current(None)
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
    unit = unit_of(run, index, piece)
    ticket = Ticket(service, row.step_id, row.interactive, failures, gate, unit=unit)
    set_current(ticket)
    kind = row.kind
    if not row.gated(piece):
        return
    health_since = row.waiting_since if kind_of(row.waiting_for) is WaitKind.HEALTH else None
    try:
        answer = gate.check(service, unit=unit, interactive=ticket.interactive,
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
        ticket.lease, ticket.claimed = answer, True
        if row.waiting_for is not None:
            with sessions.begin() as session:
                clear_wait(session, row.step_id)
        return
    wait_then_retry(task, ticket, answer)
