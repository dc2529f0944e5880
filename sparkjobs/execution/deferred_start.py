"""An attempt's start written late: with its end, or once it has run a while.

Opening an attempt (its row, the step and a queued run marked running) is one
statement and one round trip to the database before the step runs; closing it is
another. A step that needs no lease (a custom step) is often done within
milliseconds, and then the start can go in the statement that records its success:
one round trip instead of two (`sparkjobs.store.runs.succeed_at_once`). Temporal records an
activity's start the same way, with its completion.

So the start of such a step is deferred: the task reads its step, runs it, and at
its end takes the start back (`DeferredStart.take_back`) to write it with the
success. A step still running after `START_AFTER_S` has its start written by a
thread of the worker (`_Writer`), so that `show` and the run page see it running;
a failure, a retry, or an output that needs a transaction writes the start first
(`DeferredStart.written`). An attempt cut short before either leaves no row: by a
worker's death, or by a database outage that hands the message back (the task takes
its start back as it leaves, so the writer cannot record it late). The message is
delivered again, and that attempt is recorded.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
import uuid
from collections.abc import Callable

log = logging.getLogger(__name__)

# How long a step runs before its start is written while it runs.
START_AFTER_S = 0.2


class _State(enum.Enum):
    PENDING = "pending"  # not written: either side may take it
    WRITTEN = "written"  # written (`attempt_id` says which attempt, None if none)
    TAKEN = "taken"  # taken back: the task writes it with the attempt's end


class DeferredStart:
    """The start of one attempt, written by whichever side comes first.

    Args:
        write: writes the start; returns the attempt's id, or None when no attempt
            was opened (the step or its run finished meanwhile).
        clock: `time.monotonic`, or a test's.
    """

    def __init__(
        self, write: Callable[[], uuid.UUID | None], *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._write = write
        self._lock = threading.Lock()  # held while writing: the other side waits for it
        self._state = _State.PENDING
        self._attempt_id: uuid.UUID | None = None
        self.since = clock()

    def written(self) -> uuid.UUID | None:
        """Write the start unless it is written (or wait for the writer that is at it).

        Returns:
            The attempt's id; None when there is no attempt row to write to: the
            step or its run finished meanwhile, or the start was taken back (to go
            with a success whose statement then did not commit, say).

        Raises:
            Exception: what writing raised (the start stays pending).
        """
        with self._lock:
            if self._state is _State.PENDING:
                self._attempt_id = self._write()
                self._state = _State.WRITTEN
            return self._attempt_id

    def take_back(self) -> bool:
        """Take the start back to write it with the attempt's end.

        Returns:
            True when it was not written (and now never will be here); False when
            it was: the attempt's row exists (`written` gives its id).
        """
        with self._lock:
            if self._state is _State.PENDING:
                self._state = _State.TAKEN
                _writer.forget(self)
                return True
            return False

    def pending(self) -> bool:
        """Whether neither side has taken it yet."""
        return self._state is _State.PENDING


def defer(write: Callable[[], uuid.UUID | None]) -> DeferredStart:
    """A deferred start, written by this process's writer if its step outlasts
    `START_AFTER_S`."""
    start = DeferredStart(write)
    _writer.add(start)
    return start


class _Writer:
    """The thread that writes the starts of steps still running after `START_AFTER_S`.

    It looks every `START_AFTER_S / 2` while starts are pending, and when none are it
    sleeps until one is added: a busy worker wakes it a few times a second, not once a
    step, and a start taken back before it looks costs it nothing.
    """

    def __init__(self, after_s: float = START_AFTER_S, *, thread: bool = True) -> None:
        self.after_s = after_s
        self._threaded = thread  # False: a test calls `write_due` itself
        self._lock = threading.Lock()
        self._pending: dict[int, DeferredStart] = {}
        self._wake = threading.Event()
        self._idle = False  # asleep until `add` wakes it
        self._thread: threading.Thread | None = None

    def add(self, start: DeferredStart) -> None:
        with self._lock:
            self._pending[id(start)] = start
            if self._thread is None and self._threaded:
                self._thread = threading.Thread(
                    target=self._run, name="sparkjobs-deferred-starts", daemon=True
                )
                self._thread.start()
            if self._idle:
                self._idle = False
                self._wake.set()

    def forget(self, start: DeferredStart) -> None:
        with self._lock:
            self._pending.pop(id(start), None)

    def due(self, now: float) -> list[DeferredStart]:
        """The pending starts older than `after_s` at `now`, no longer tracked."""
        with self._lock:
            due = [s for s in self._pending.values() if now - s.since >= self.after_s]
            for start in due:
                del self._pending[id(start)]
            return due

    def write_due(self, now: float) -> int:
        """Write the starts due at `now`; how many were written."""
        count = 0
        for start in self.due(now):
            if not start.pending():
                continue
            try:
                start.written()
            except Exception:  # the task writes it at its end instead
                log.warning("could not write a running step's start", exc_info=True)
                continue
            count += 1
        return count

    def _run(self) -> None:
        while True:
            with self._lock:
                self._idle = idle = not self._pending
                self._wake.clear()
            self._wake.wait(None if idle else self.after_s / 2)
            self.write_due(time.monotonic())


_writer = _Writer()
