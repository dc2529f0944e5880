"""What a task does with an exception: retry it later, or fail the step and the run.

Retryable model-server errors (and a database that blipped) are retried with the
policy in `retry`; permanent errors, bad input and bugs fail at once, with an error
that names the step, the service and why. The retry itself is Celery's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from celery import Task
from sqlalchemy.exc import DBAPIError

from sparkjobs.errors import RetryableError, ServerUnreachable, SparkjobsError, Unreachable
from sparkjobs.execution.retry import (
    CELERY_MAX_RETRIES,
    max_countdown_s,
    retry_delay_s,
    should_retry,
)

log = logging.getLogger(__name__)

TRANSIENT: tuple[type[BaseException], ...] = (RetryableError, Unreachable, DBAPIError)


def describe(exc: BaseException) -> str:
    """An error as one line for SQL: ours as they are, anyone else's with its type."""
    if isinstance(exc, SparkjobsError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


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
    """
    from sparkjobs.dispatch.admission import current_ticket, wait_then_retry
    from sparkjobs.dispatch.waits import Wait, WaitKind

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
