"""Why a run is not done yet, in one sentence, as `show`, `runs`, `wait` and the run page
say it; and saying it while a caller follows the run.

A step's place in its service's line comes first (read from Redis: a unit that joined
the line before its message was published has no record in SQL), then what dispatch
recorded on the step (`steps.waiting_for`, `sparkjobs.dispatch.waits`), then what a
queued step with neither waits for: an earlier step, a retry, or the worker of its
node. A run waits for what its first unfinished step waits for. `WaitNotes` says each
new reason of a followed run once, when it begins: a health wait whose only change is
the seconds it has lasted is the same reason.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING

from sparkjobs.dispatch.waits import kind_of
from sparkjobs.store.models import AttemptStatus, Status

if TYPE_CHECKING:
    import redis
    from sqlalchemy.orm import Session

    from sparkjobs.config import Config
    from sparkjobs.dispatch.places import StepPlace
    from sparkjobs.store.models import Run, Step

log = logging.getLogger(__name__)

NOTE_POLL_S = 0.5  # how often a followed run is read for its reason
# A queued step with nothing recorded is said to wait only after this: most are
# taken by their worker within milliseconds, and saying so would be noise.
QUIET_S = 3.0
# What changes in a reason while it stays the same: how long it has lasted, when the
# start is expected, since when.
_VOLATILE = re.compile(r" for \d+ s\b|, expected to start in about [^;]*| \(since [^)]*\)")


@dataclass(frozen=True)
class Waiting:
    """Why step `step` is not done yet, and since when (None: not known)."""

    step: int
    text: str
    since: datetime | None = None
    recorded: bool = True  # False: not dispatch's record or a place in line, but inferred
    untaken: tuple[str, str] | None = None  # (service, node): queued, taken by no worker yet

    @property
    def kind(self) -> str:
        """In a word: health, lease, backpressure, retry, line, step or queued."""
        recorded = kind_of(self.text)
        if recorded is not None:
            return recorded.value
        if " in line for " in self.text:
            return "line"
        return "retry" if self.text.startswith("will retry") else (
            "step" if self.text.startswith("waits for") else "queued")  # fmt: skip

    @property
    def gist(self) -> str:
        """The reason without what changes while it stays the same."""
        return _VOLATILE.sub("", self.text)


def step_waiting(  # noqa: PLR0911  (one answer per case)
    run: Run, step: Step, place: StepPlace | None = None, config: Config | None = None
) -> Waiting | None:
    """Why `step` of `run` is not done yet; None when it finished or runs with nothing
    recorded (it is being done).

    Args:
        place: where the step stands in its service's line (`runs.info.line_places`).
        config: names the service's limit in an inferred reason, when given.
    """
    if step.status.terminal:
        return None
    if place is not None:
        lease = step.waiting_for is not None and step.waiting_for.startswith("lease:")
        return Waiting(step.index, place.describe(), step.waiting_since if lease else None)
    if step.waiting_for:
        return Waiting(step.index, step.waiting_for, step.waiting_since)
    if step.status == Status.RUNNING:
        return None
    earlier = [s for s in run.steps if s.index < step.index and s.status != Status.SUCCEEDED]
    if earlier:
        first = earlier[0]
        return Waiting(step.index, f"waits for an earlier step ({first.name} on "
                       f"{first.service}), which is {first.status.value}", None, False)  # fmt: skip
    failed = [a for a in step.attempts if a.status == AttemptStatus.FAILED]
    if failed:
        said = f"will retry after attempt {failed[-1].number} failed: {failed[-1].error or '?'}"
        return Waiting(step.index, said, failed[-1].finished_at, False)
    service = config.services.get(step.service) if config is not None else None
    limit = f", at most {service.in_flight_limit} at once" if service else ""
    said = (f"queued for {step.service} on {step.node}{limit}; it starts when the worker "
            f"of {step.node} takes it")  # fmt: skip
    return Waiting(step.index, said, step.queued_at, False, (step.service, step.node))


def run_waiting(
    run: Run, places: Mapping[int, StepPlace] | None = None, config: Config | None = None
) -> Waiting | None:
    """What `run` waits for: what its first unfinished step waits for; None when that
    step is being done, or the run finished."""
    if run.status.terminal:
        return None
    for step in run.steps:
        if not step.status.terminal:
            return step_waiting(run, step, (places or {}).get(step.index), config)
    return None


def runs_waiting(config: Config, session: Session, runs: Iterable[Run]) -> dict[uuid.UUID, Waiting]:
    """What each unfinished run of `runs` waits for, by run id: places in line read
    over one Redis connection (none when the broker does not answer)."""
    unfinished = [run for run in runs if not run.status.terminal]
    if not unfinished:
        return {}
    found: dict[uuid.UUID, Waiting] = {}
    with _Lines(config) as lines:
        for run in unfinished:
            waiting = run_waiting(run, lines.places(session, run), config)
            if waiting is not None:
                found[run.id] = waiting
    return found


class _Lines:
    """Places in line over one Redis client; empty when the broker does not answer."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._client: redis.Redis | None = None
        self._broken = False

    def places(self, session: Session, run: Run) -> dict[int, StepPlace]:
        from sparkjobs.broker.client import key, redis_client
        from sparkjobs.dispatch.leases import Leases
        from sparkjobs.dispatch.places import step_places

        if self._broken:
            return {}
        try:
            if self._client is None:
                self._client = redis_client(self.config, timeout_s=2.0)
            leases = Leases(self._client, functools.partial(key, self.config),
                            ttl_s=self.config.dispatch.lease_ttl_s)  # fmt: skip
            return step_places(self.config, session, leases, run)
        except Exception as exc:  # the places are extra: the reason stands without them
            log.warning("the lines of run %s could not be read: %s", run.id, type(exc).__name__)
            self._broken = True
            return {}

    def __enter__(self) -> _Lines:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._client is not None:
            self._client.close()


class WaitNotes:
    """Says why a followed run waits, in a thread: `say(text)` once for each new reason.

    A reason recorded by dispatch, or a place in line, is said when first seen; an
    inferred one (queued, nothing recorded) only once the run has stayed so for
    `quiet_s`, with whether a worker of the step's node publishes health readings at
    all. Use as a context manager around the wait; it stops when the run finishes.
    """

    def __init__(
        self,
        config: Config,
        run_id: uuid.UUID,
        say: Callable[[str], None],
        *,
        poll_s: float = NOTE_POLL_S,
        quiet_s: float = QUIET_S,
    ) -> None:
        self.config = config
        self.run_id = run_id
        self.say = say
        self.poll_s = poll_s
        self.quiet_s = quiet_s
        self._stop = threading.Event()
        self._said: str | None = None
        self._thread = threading.Thread(target=self._follow, name="sparkjobs-wait-notes",
                                        daemon=True)  # fmt: skip

    def __enter__(self) -> WaitNotes:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _follow(self) -> None:
        from sparkjobs.artifacts.locate import store_sessions
        from sparkjobs.store.engine import reading
        from sparkjobs.store.queries import get_run

        started = time.monotonic()
        with store_sessions(self.config) as sessions, _Lines(self.config) as lines:
            while not self._stop.is_set():
                try:
                    with reading(sessions) as session:
                        run = get_run(session, self.run_id)
                        if run.status.terminal:
                            return
                        waiting = run_waiting(run, lines.places(session, run), self.config)
                except Exception as exc:  # a note is extra: the wait itself reports failures
                    log.debug("the reason of run %s could not be read: %s", self.run_id, exc)
                    waiting = None
                quiet = time.monotonic() - started < self.quiet_s
                if waiting is None or (not waiting.recorded and quiet):
                    self._said = None if waiting is None else self._said
                elif waiting.gist != self._said:
                    self._said = waiting.gist
                    self.say(self._worded(waiting))
                self._stop.wait(self.poll_s)

    def _worded(self, waiting: Waiting) -> str:
        """The reason; for a step no worker took, whether its node's worker runs at all
        (no worker of a node publishes its services' health when none runs)."""
        from sparkjobs.dispatch.status import read_statuses

        if waiting.untaken is None:
            return waiting.text
        service, node = waiting.untaken
        for status in read_statuses(self.config, [service]):
            if not status.known:
                return (f"{waiting.text}, but {status.detail}: is `sparkjobs worker --node "
                        f"{node}` running?")  # fmt: skip
        return waiting.text
