"""What a task does with an exception: retry it later, or fail the step and the run.

Retryable model-server errors (and a database that blipped) are retried with the
policy in `retry`; permanent errors, bad input and bugs fail at once, with an error
that names the step, the service and why. The retry itself is Celery's.

A database that does not answer at all (refused, restarting, a connection cut) is
an outage, not a failure of the step: the task is handed back with a backoff until
the database answers, without writing anything, since every write would fail too.
`OutageAwareTask` (the app's task class) does this for errors raised anywhere in a
task, `settle` for the ones a task body catches. After `tasks.database_outage_s` of
one outage the message is dropped and the step is left as SQL last saw it (queued
or running), for the reconciler: failing it would need the database as well.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn, cast

from celery import Task
from celery.exceptions import Ignore, Retry
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import Pool

from sparkjobs.dispatch.retry import (
    CELERY_MAX_RETRIES,
    max_countdown_s,
    retry_delay_s,
    should_retry,
)
from sparkjobs.errors import RetryableError, ServerUnreachable, SparkjobsError, Unreachable

if TYPE_CHECKING:
    from sparkjobs.broker.app import SparkjobsApp

log = logging.getLogger(__name__)

TRANSIENT: tuple[type[BaseException], ...] = (RetryableError, Unreachable, DBAPIError)
# PostgreSQL error classes that mean "no usable server": connection exceptions (08),
# insufficient resources (53: too many connections), operator intervention (57:
# shutdown, starting up), system errors (58). psycopg gives no code for a refusal.
OUTAGE_SQLSTATE_CLASSES = frozenset({"08", "53", "57", "58"})
# The longest pause between two tries during an outage: short, so that work resumes
# within seconds of the database coming back.
OUTAGE_MAX_DELAY_S = 10.0
# Set on a message handed back during an outage: its next delivery first closes the
# attempts that the outage left open (same task id: Celery's retry keeps it).
OUTAGE_HEADER = "sparkjobs_outage"
INTERRUPTED = "interrupted: the database became unreachable during this attempt"


def describe(exc: BaseException) -> str:
    """An error as one line for SQL: ours as they are, anyone else's with its type."""
    if isinstance(exc, SparkjobsError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def is_database_outage(exc: BaseException | None) -> bool:
    """Whether `exc` (or what caused it) says the database cannot be reached at all.

    A lost or refused connection, or a server that is shutting down or starting up;
    not a constraint violation, a lock timeout or SQLite's busy database, which the
    ordinary retry policy handles.
    """
    for _ in range(8):  # the cause chain: Unreachable from DBAPIError, and so on
        if exc is None:
            return False
        if isinstance(exc, DBAPIError):
            if exc.connection_invalidated:
                return True
            sqlstate = getattr(exc.orig, "sqlstate", False)  # psycopg errors only
            if sqlstate is False or not isinstance(exc.orig, Exception):
                return False
            kind = type(exc.orig).__name__
            if sqlstate is None:  # no server answered: refused, reset, timed out
                return kind in ("OperationalError", "InterfaceError")
            return str(sqlstate)[:2] in OUTAGE_SQLSTATE_CLASSES
        exc = exc.__cause__
    return False


class OutageClock:
    """Since when this process has found the database unreachable (one outage).

    Any connection handed out by a pool ends the outage: the database answered. A
    disconnect invalidates the whole pool, so after one every connection handed out
    was made anew (or, idle, pinged: `sparkjobs.store.engine`). Shared by the
    worker's threads.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._since: float | None = None
        self._lock = threading.Lock()

    def failed(self) -> float:
        """Note a failure; how long (s) the current outage has lasted."""
        with self._lock:
            now = self._clock()
            if self._since is None:
                self._since = now
            return now - self._since

    def answered(self) -> None:
        self._since = None  # a plain store: no lock needed to end the outage


outage = OutageClock()


@event.listens_for(Pool, "checkout")
def _database_answered(*_: Any) -> None:
    outage.answered()


def retry_through_outage(task: Task[Any, Any], exc: BaseException, *, what: str) -> NoReturn:
    """Hand the message back for a later try, or drop it once the outage lasted too long.

    Needs the broker only: nothing is written to the database (it is unreachable).

    Raises:
        celery.exceptions.Retry: the retry is queued with a backoff.
        celery.exceptions.Ignore: the outage passed `tasks.database_outage_s`; the
            step is left for recovery.
    """
    tasks = cast("SparkjobsApp", task.app).sparkjobs_config.tasks
    lasted_s = outage.failed()
    reason = describe(exc).splitlines()[0]
    if lasted_s > tasks.database_outage_s:
        log.error(
            "%s: the database has been unreachable for %.0f s, beyond "
            "tasks.database_outage_s = %g; leaving it for recovery (%s)",
            what, lasted_s, tasks.database_outage_s, reason,
        )  # fmt: skip
        raise Ignore() from exc
    cap = min(OUTAGE_MAX_DELAY_S, max_countdown_s(tasks))
    countdown = max(0.2, retry_delay_s(int(task.request.retries or 0), max_delay_s=cap))
    log.warning(
        "%s: the database is unreachable (%s); next try in %.1f s (outage for %.0f s)",
        what, reason, countdown, lasted_s,
    )  # fmt: skip
    headers = {**(task.request.headers or {}), OUTAGE_HEADER: True}
    raise task.retry(countdown=countdown, max_retries=CELERY_MAX_RETRIES, headers=headers)


def close_interrupted(task: Task[Any, Any]) -> None:
    """Fail the attempts an outage left open under this message's task id."""
    from sqlalchemy import update

    from sparkjobs.store.engine import shared_sessions
    from sparkjobs.store.models import Attempt, AttemptStatus
    from sparkjobs.store.runs import utc_now

    config = cast("SparkjobsApp", task.app).sparkjobs_config
    with shared_sessions(config.database).begin() as session:
        session.execute(
            update(Attempt)
            .where(Attempt.task_id == str(task.request.id), Attempt.finished_at.is_(None))
            .values(status=AttemptStatus.FAILED, finished_at=utc_now(), error=INTERRUPTED)
        )
    if task.request.headers:  # later retries of this message copy its headers
        task.request.headers.pop(OUTAGE_HEADER, None)


class OutageAwareTask(Task[Any, Any]):
    """The app's task class: a database outage anywhere in a task hands it back.

    Without this, an outage in the code before a task's own `try` (admission, the
    first read of the step) would fail the task and drop its message for good.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            if self.request.called_directly:  # not from a worker: Celery's own call
                return super().__call__(*args, **kwargs)
            if (self.request.headers or {}).get(OUTAGE_HEADER):
                close_interrupted(self)
            # From a worker the request is already on the stack; Task.__call__ would
            # push an empty one over it.
            return self.run(*args, **kwargs)
        except (Retry, Ignore):
            raise
        except Exception as exc:
            if self.request.called_directly or not is_database_outage(exc):
                raise
            where = ", ".join(f"{name} {value}" for name, value in kwargs.items())
            retry_through_outage(self, exc, what=f"{self.name} ({where})")


def settle(
    task: Task[Any, Any],
    exc: BaseException,
    *,
    what: str,
    max_delay_s: float,
    on_retry: Callable[[str], None],
    on_failure: Callable[[str], None],
) -> None:
    """Retry `task` after a transient error, else record the failure.

    Args:
        task: the bound task that caught `exc`.
        exc: the exception.
        what: names the work in messages, e.g. "step 1 (speak on orpheus)".
        max_delay_s: the retry delay cap (`config.tasks.max_retry_delay_s`).
        on_retry: records the failed attempt before the retry is queued.
        on_failure: fails the step (and the run) with the final error.

    Raises:
        celery.exceptions.Retry: the retry is queued (Celery acknowledges this message).
        celery.exceptions.Ignore: a database outage outlasted its deadline.
    """
    from sparkjobs.dispatch.admission import current_ticket, wait_then_retry
    from sparkjobs.dispatch.waits import Wait, WaitKind

    if is_database_outage(exc):
        # Neither callback can write now; the attempt stays open until recovery.
        retry_through_outage(task, exc, what=what)
    ticket = current_ticket()
    # Waits hand the message back too, so Celery's count of retries is not the count
    # of failures: an admitted task knows its failed attempts from SQL.
    retries = ticket.failures if ticket is not None else int(task.request.retries or 0)
    message = f"{what}: {describe(exc)}"
    if isinstance(exc, ServerUnreachable) and ticket is not None:
        # Down or loading: wait for its health (up to the wait deadline) instead of
        # spending retries on it; every other waiting step learns it at once.
        log.warning("%s; waiting for the server", message)
        on_retry(message)
        ticket.gate.report_unreachable(ticket.service, describe(exc))
        wait_then_retry(task, ticket, Wait(WaitKind.HEALTH, message, 1.0))
    if isinstance(exc, TRANSIENT) and should_retry(retries):
        log.warning("%s; retry %d", message, retries + 1)
        on_retry(message)
        if ticket is not None:
            max_delay_s = min(max_delay_s, max_countdown_s(ticket.gate.config.tasks))
        countdown = retry_delay_s(retries, max_delay_s=max_delay_s)
        if ticket is not None:
            text = f"attempt {retries + 1} failed ({message}); next try in {countdown:.1f} s"
            wait_then_retry(task, ticket, Wait(WaitKind.RETRY, text, countdown))
        raise task.retry(countdown=countdown, max_retries=CELERY_MAX_RETRIES)
    if isinstance(exc, TRANSIENT):
        message = f"{what}: gave up after {retries + 1} attempts; last error: {describe(exc)}"
    elif not isinstance(exc, SparkjobsError):
        log.error("%s", message, exc_info=exc)  # a bug: keep the traceback in the log
    on_failure(message)
