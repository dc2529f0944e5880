"""A worker's thread pool, and its soft shutdown: running tasks get up to the grace
period to finish, and the worker stops as soon as none runs.

Celery's cold shutdown (SIGTERM, remapped to SIGQUIT) runs in a signal handler on
the main thread, the thread that hands tasks to the pool: everything here that the
handler calls may have interrupted the pool in the middle of a hand-off.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

from celery.concurrency.thread import TaskPool

log = logging.getLogger(__name__)


class HandBackThreadPool(TaskPool):
    """Celery's thread pool, except that stopping never waits for running tasks,
    and that it knows which tasks are still running.

    By the time the pool stops, the soft shutdown has already given tasks their
    grace period and the consumer has handed unacknowledged messages back; a
    thread still running would otherwise hold the process open until it ends.
    """

    executor: ThreadPoolExecutor

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Re-entrant: the soft shutdown reads `running()` from a signal handler, which
        # may interrupt the main thread inside `on_apply`.
        self._lock = threading.RLock()
        self._running: set[Future[Any]] = set()
        # The thread inside `on_apply`, and whether a stop came while it was there.
        self._applying: int | None = None
        self._stop_deferred = False

    def on_apply(self, *args: Any, **kwargs: Any) -> Any:
        # Celery's cold shutdown (SIGTERM) runs in a signal handler on the main thread,
        # the thread that applies tasks, so it may interrupt `executor.submit`, which
        # holds the executor's lock (not re-entrant) while it starts a thread: stopping
        # the executor from there would wait forever for a lock its own thread holds.
        # `on_stop` then leaves the stop to this method, for when `submit` returns.
        self._applying = threading.get_ident()
        try:
            applied = super().on_apply(*args, **kwargs)
            with self._lock:
                self._running.add(applied.f)
        finally:
            self._applying = None
            if self._stop_deferred:
                self._stop_executor()
        applied.f.add_done_callback(self._done)
        return applied

    def running(self) -> list[Future[Any]]:
        """The tasks not finished yet. A task's future completes only after its
        callback has run, so a finished task has been acknowledged too."""
        with self._lock:
            return list(self._running)

    def on_stop(self) -> None:
        if self._applying == threading.get_ident():  # a signal handler inside `on_apply`
            self._stop_deferred = True
            return
        self._stop_executor()

    def _stop_executor(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)

    def terminate_job(self, pid: int | None, signal: int | None = None) -> None:
        """Nothing to do: a thread cannot be stopped from outside. Celery's cold
        shutdown cancels each task still running after the grace period this way (the
        base pool raises, which aborted the shutdown with a CRITICAL traceback); the
        task's unacknowledged message goes back to the queue when the consumer's
        channel closes, and the worker exits without waiting for the thread."""

    def _done(self, future: Future[Any]) -> None:
        with self._lock:
            self._running.discard(future)


class GraceUntilIdle:
    """A worker's soft shutdown that ends as soon as no task runs.

    Celery's own sleeps the whole `worker_soft_shutdown_timeout` whenever a task
    runs (or always, with `worker_enable_soft_shutdown_on_idle`): a worker with
    nothing to finish would keep `up`, systemd or a deploy waiting for nothing.
    Mixed into the app's `Worker` class by `run_worker`.
    """

    app: Any
    pool: Any

    def wait_for_soft_shutdown(self) -> None:
        grace_s = float(self.app.conf.worker_soft_shutdown_timeout or 0)
        running = self.pool.running() if isinstance(self.pool, HandBackThreadPool) else []
        if grace_s <= 0 or not running:
            return
        log.warning(
            "stopping: %d running task(s) get up to %g s to finish; the rest go back to the queue",
            len(running),
            grace_s,
        )
        wait(running, timeout=grace_s)
