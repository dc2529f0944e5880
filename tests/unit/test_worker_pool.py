"""The worker's thread pool, stopped the way Celery's cold shutdown stops it."""

from __future__ import annotations

import threading

import pytest

from sparkjobs.worker.pool import HandBackThreadPool


def test_a_stop_that_interrupts_a_task_hand_off_does_not_deadlock() -> None:
    # SIGTERM's handler runs on the main thread, which may be inside `executor.submit`
    # (holding the executor's lock, starting a thread) when the handler stops the pool.
    pool = HandBackThreadPool(limit=2)
    pool.start()
    executor = pool.executor
    adjust = executor._adjust_thread_count  # type: ignore[attr-defined]

    def adjust_then_stop() -> None:  # the signal arrives while submit holds the lock
        adjust()
        pool.stop()

    executor._adjust_thread_count = adjust_then_stop  # type: ignore[attr-defined]
    ran = threading.Event()
    applied: list[object] = []
    # On a thread of its own, so that a deadlock fails the test instead of hanging it.
    hand_off = threading.Thread(
        target=lambda: applied.append(pool.apply_async(ran.set)), daemon=True
    )
    hand_off.start()
    hand_off.join(timeout=10)
    if hand_off.is_alive():
        executor._shutdown_lock.release()  # type: ignore[attr-defined]  # let the run end
        pytest.fail("stopping the pool inside submit deadlocked")
    assert executor._shutdown  # type: ignore[attr-defined]  # the deferred stop happened
    # The task handed off meanwhile was either cancelled in the queue or ran.
    (result,) = applied
    assert result.f.cancelled() or ran.wait(timeout=10)  # type: ignore[attr-defined]
