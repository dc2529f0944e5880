"""The shared state of one fetch: the chunks still to do, the sources and how each
fares, and what has arrived. The streams take chunks from it and report back."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from sparkjobs.artifacts.locate import Endpoint
from sparkjobs.artifacts.manifest import Manifest
from sparkjobs.artifacts.spread import NO_PLAN, PortPlan

SOURCE_FAILURES_ALLOWED = 3


@dataclass
class SourceState:
    endpoint: Endpoint
    ports: PortPlan = NO_PLAN
    failures: int = 0
    banned: str | None = None
    corrupt: bool = False


@dataclass
class FetchState:
    """Shared state of one fetch: the chunks to do, the sources, and how it is going."""

    manifest: Manifest
    dest: Path
    sources: list[SourceState]
    pending: list[int]
    verified: set[int]
    cond: threading.Condition = field(default_factory=threading.Condition)
    in_flight: int = 0
    running: int = 0
    bytes_done: int = 0
    bytes_received: int = 0
    fatal: BaseException | None = None
    used: set[str] = field(default_factory=set)
    local_ports: set[int] = field(default_factory=set)

    def take(self) -> int | None:
        with self.cond:
            while True:
                if self.fatal is not None or not self.live_sources():
                    return None
                if self.pending:
                    self.in_flight += 1
                    return self.pending.pop()
                if self.in_flight == 0:
                    return None
                self.cond.wait()

    def done(self, index: int, length: int) -> None:
        with self.cond:
            self.in_flight -= 1
            self.verified.add(index)
            self.bytes_done += length
            self.cond.notify_all()

    def retry(self, index: int) -> None:
        with self.cond:
            self.in_flight -= 1
            self.pending.append(index)
            self.cond.notify_all()

    def abort(self, exc: BaseException) -> None:
        with self.cond:
            if self.fatal is None:
                self.fatal = exc
            self.cond.notify_all()

    def live_sources(self) -> list[SourceState]:
        return [source for source in self.sources if source.banned is None]

    def pick(self, stream: int) -> tuple[SourceState, int] | None:
        """The source stream `stream` pulls from, and its slot among that source's streams."""
        with self.cond:
            live = self.live_sources()
            return (live[stream % len(live)], stream // len(live)) if live else None

    def stopped(self) -> None:
        with self.cond:
            self.running -= 1
            self.cond.notify_all()

    def fail(self, source: SourceState, reason: str, *, fatal: bool, corrupt: bool = False) -> None:
        with self.cond:
            source.failures += 1
            if corrupt:
                source.corrupt = True
            if fatal or source.failures > SOURCE_FAILURES_ALLOWED:
                source.banned = reason
            self.cond.notify_all()

    @property
    def complete(self) -> bool:
        return len(self.verified) == self.manifest.chunk_count


class SourceError(Exception):
    def __init__(self, reason: str, *, fatal: bool = False, corrupt: bool = False):
        super().__init__(reason)
        self.fatal, self.corrupt = fatal, corrupt
