"""Waiting, in a test, until a statement on another connection waits for a row lock."""

from __future__ import annotations

import time

from sqlalchemy import Engine, text

HANG_GUARD_S = 60.0


def wait_for_a_lock_wait(engine: Engine, statement_start: str) -> None:
    """Until a connection to `engine`'s database runs a statement that begins with
    `statement_start` and waits for a lock.

    Raises:
        AssertionError: none did within `HANG_GUARD_S` (a hang guard, not a timing).
    """
    deadline = time.monotonic() + HANG_GUARD_S
    with engine.connect() as probe:
        while time.monotonic() < deadline:
            waiting = probe.execute(
                text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                     "AND datname = current_database() AND starts_with(query, :start)"),
                {"start": statement_start},
            ).scalar_one()  # fmt: skip
            probe.rollback()
            if waiting:
                return
            time.sleep(0.01)
    raise AssertionError(f"no statement beginning {statement_start!r} waited for a lock")
