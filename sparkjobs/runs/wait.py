"""Waiting for a run to end: woken by its end announcement, with a slow poll of SQL in
case one is lost or the broker does not answer."""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from sparkjobs.artifacts.locate import store_sessions
from sparkjobs.store.engine import reading, unreachable
from sparkjobs.store.models import Run
from sparkjobs.store.queries import get_run

if TYPE_CHECKING:
    from sparkjobs.config import Config


# `wait_for_run` wakes on the run's end announcement; this slow poll only covers a
# lost announcement or a broker that does not answer.
WAIT_SAFETY_POLL_S = 2.0


def wait_for_run(
    config: Config,
    run_id: uuid.UUID,
    *,
    timeout_s: float | None,
    safety_poll_s: float = WAIT_SAFETY_POLL_S,
    sessions: sessionmaker[Session] | None = None,
) -> Run:
    """Wait until the run is terminal, or `timeout_s` passes; the run as it is then.

    It subscribes to the run's end announcement (`sparkjobs.broker.notify`) before
    it first reads SQL, then reads SQL again when the announcement arrives, and every
    `safety_poll_s` in case one is lost or the broker does not answer.

    Args:
        config: the cluster config.
        run_id: the run to wait for.
        timeout_s: how long to wait at most; None waits without limit.
        safety_poll_s: the longest sleep between two reads of SQL.
        sessions: a session factory to reuse (callers that wait often); default: a
            new engine for this call, disposed of afterwards.

    Returns:
        The run with everything loaded. After a timeout its status is not terminal
        (check `run.status.terminal`).

    Raises:
        UnknownRun: no such run.
        Unreachable: the database did not answer.
    """
    from sparkjobs.broker.notify import FinishWatch

    if not isinstance(run_id, uuid.UUID):  # a caller's string: get_run says what is wrong
        try:
            run_id = uuid.UUID(str(run_id))
        except ValueError:
            with store_sessions(config, sessions) as factory, reading(factory) as session:
                return get_run(session, run_id)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    with store_sessions(config, sessions) as factory, FinishWatch(config, run_id) as watch:
        announced = False
        while True:
            pause_s = safety_poll_s
            if deadline is not None:
                pause_s = min(pause_s, deadline - time.monotonic())
            try:
                with reading(factory) as session:
                    # Only the status while the run goes on: the whole run is read
                    # when it ends (at once after its announcement) or the wait does.
                    full = announced or pause_s <= 0
                    if not full:
                        status = session.scalar(select(Run.status).where(Run.id == run_id))
                        full = status is None or status.terminal
                    if full:
                        run = get_run(session, run_id)
                        if run.status.terminal or pause_s <= 0:
                            return run
            except DBAPIError as exc:
                raise unreachable(config.database, exc) from exc
            announced = watch.wait(pause_s)
