"""A deferred start is written once, by whichever side comes first (`deferred_start`).

The task takes it back to write it with its success; the worker's writer writes it
for a step still running after `START_AFTER_S`; a failure writes it first. Clocks
are injected: no test waits for time to pass.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from sparkjobs.execution.deferred_start import DeferredStart, _Writer

ATTEMPT = uuid.uuid4()
HANG_GUARD_S = 30.0


class Writes:
    """A start's write that counts its calls."""

    def __init__(self, answer: uuid.UUID | None = ATTEMPT) -> None:
        self.calls = 0
        self.answer = answer

    def __call__(self) -> uuid.UUID | None:
        self.calls += 1
        return self.answer


def _start(write: Callable[[], uuid.UUID | None], at: float = 0.0) -> DeferredStart:
    return DeferredStart(write, clock=lambda: at)


def test_a_start_taken_back_is_never_written() -> None:
    write = Writes()
    start = _start(write)
    assert start.take_back()
    assert start.written() is None  # nothing to write to: it goes with the end
    assert write.calls == 0


def test_a_written_start_is_written_once_and_cannot_be_taken_back() -> None:
    write = Writes()
    start = _start(write)
    assert start.written() == ATTEMPT
    assert start.written() == ATTEMPT
    assert not start.take_back()
    assert write.calls == 1


def test_a_start_that_found_its_step_finished_has_no_attempt() -> None:
    start = _start(Writes(answer=None))
    assert start.written() is None
    assert not start.take_back()


def test_a_failed_write_leaves_the_start_to_the_task() -> None:
    def down() -> uuid.UUID:
        raise ConnectionError("database down")

    start = _start(down)
    with pytest.raises(ConnectionError):
        start.written()
    assert start.pending()
    assert start.take_back()


def test_the_writer_writes_only_the_starts_that_have_lasted() -> None:
    writer = _Writer(after_s=0.2, thread=False)
    old_write, young_write = Writes(), Writes()
    old, young = _start(old_write, at=10.0), _start(young_write, at=10.5)
    writer.add(old)
    writer.add(young)
    assert writer.write_due(now=10.1) == 0
    assert writer.write_due(now=10.3) == 1
    assert (old_write.calls, young_write.calls) == (1, 0)
    assert young.take_back()  # the step ended before its start was due
    writer.forget(young)
    assert writer.write_due(now=99.0) == 0
    assert young_write.calls == 0


def test_a_start_taken_back_before_the_writer_looks_is_skipped() -> None:
    writer = _Writer(after_s=0.2, thread=False)
    write = Writes()
    start = _start(write)
    writer.add(start)
    assert start.take_back()
    assert writer.write_due(now=1.0) == 0
    assert write.calls == 0


def test_the_writer_survives_a_failed_write() -> None:
    def down() -> uuid.UUID:
        raise ConnectionError("database down")

    writer = _Writer(after_s=0.2, thread=False)
    failing, fine = _start(down), _start(Writes())
    writer.add(failing)
    writer.add(fine)
    assert writer.write_due(now=1.0) == 1
    assert failing.take_back()  # left to its task, which writes it with its end


def test_taking_back_a_start_being_written_waits_for_the_write() -> None:
    """The writer holds the start while it writes: the task's `take_back` then
    answers False (the row exists), never True while the row is being written."""
    writing, release = threading.Event(), threading.Event()

    def slow() -> uuid.UUID:
        writing.set()
        assert release.wait(HANG_GUARD_S)
        return ATTEMPT

    start = _start(slow)
    with ThreadPoolExecutor(2) as pool:
        written = pool.submit(start.written)
        assert writing.wait(HANG_GUARD_S)
        taken = pool.submit(start.take_back)
        assert not taken.done()
        release.set()
        assert written.result(timeout=HANG_GUARD_S) == ATTEMPT
        assert taken.result(timeout=HANG_GUARD_S) is False


def test_the_writers_thread_writes_a_start_that_lasts() -> None:
    """The thread itself, on the real clock, with a short delay: it wakes for the
    first start after sleeping idle, and writes it."""
    writer = _Writer(after_s=0.01)
    done = threading.Event()

    def write() -> uuid.UUID:
        done.set()
        return ATTEMPT

    writer.add(DeferredStart(write))
    assert done.wait(HANG_GUARD_S)
