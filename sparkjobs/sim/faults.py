"""Fault injection and request accounting, per simulated service.

Each work request draws its fate from a seeded generator: answer normally, fail at
once (error_rate), hang (hang_rate), or fail mid-stream (midstream_error_rate).
`Stats` counts requests in flight, the most seen at once, and the time the server was
busy and idle between its first request and its last; `/_sim/stats` shows them.
"""

from __future__ import annotations

import enum
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sparkjobs.config.sections import SimProfile

# Faults that may change while the simulator runs (POST /_sim/faults); refusing
# connections and loading are decided when the socket opens.
RUNTIME_FIELDS = frozenset({
    "error_rate", "hang_rate", "midstream_error_rate", "slow_factor", "empty_wav",
    "backend_down", "max_queue", "reasoning_tokens", "reasoning_field", "error_shape",
    "health_route", "stream_usage", "metric_names", "context_tokens", "any_model",
    "served_models", "html",
})  # fmt: skip


class Fate(enum.Enum):
    """What the simulator does with one request."""

    ANSWER = "answer"
    ERROR = "error"
    HANG = "hang"
    MIDSTREAM = "midstream"


@dataclass
class Stats:
    """Requests seen by one simulated service."""

    in_flight: int = 0
    max_in_flight: int = 0
    requests: int = 0
    fates: Counter[str] = field(default_factory=Counter)
    # Busy: at least one request in flight. Idle is the rest of the time between the
    # first request's arrival and the last one's end (a serial server's gaps).
    busy_s: float = 0.0
    first_at: float | None = None
    last_at: float | None = None
    _busy_since: float | None = None

    def enter(self) -> None:
        now = time.monotonic()
        if self.in_flight == 0:
            self._busy_since = now
        if self.first_at is None:
            self.first_at = now
        self.in_flight += 1
        self.requests += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def leave(self) -> None:
        self.in_flight -= 1
        now = time.monotonic()
        self.last_at = now
        if self.in_flight == 0 and self._busy_since is not None:
            self.busy_s += now - self._busy_since
            self._busy_since = None

    def reset(self) -> None:
        """Forget the history; requests in flight stay counted."""
        self.max_in_flight = self.in_flight
        self.requests = 0
        self.fates.clear()
        self.busy_s, self.first_at, self.last_at = 0.0, None, None
        self._busy_since = time.monotonic() if self.in_flight else None

    def as_json(self) -> dict[str, Any]:
        span_s = (self.last_at - self.first_at) if self.first_at and self.last_at else 0.0
        return {
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "requests": self.requests,
            "fates": dict(self.fates),
            "busy_s": round(self.busy_s, 6),
            "idle_s": round(max(0.0, span_s - self.busy_s), 6),
        }


class Faults:
    """The live profile of a service and the dice that pick each request's fate."""

    def __init__(self, profile: SimProfile) -> None:
        self.profile = profile
        self._rng = random.Random(profile.seed)

    def draw(self, stats: Stats, *, streaming: bool) -> Fate:
        """Pick the fate of one request (mid-stream errors need a stream)."""
        p = self.profile
        roll = self._rng.random()
        fate = Fate.ANSWER
        if roll < p.error_rate:
            fate = Fate.ERROR
        elif roll < p.error_rate + p.hang_rate:
            fate = Fate.HANG
        elif streaming and self._rng.random() < p.midstream_error_rate:
            fate = Fate.MIDSTREAM
        stats.fates[fate.value] += 1
        return fate

    def update(self, changes: dict[str, Any]) -> SimProfile:
        """Change runtime faults; returns the new profile.

        Raises:
            ValueError: naming a field that cannot change at runtime, or a bad value.
        """
        fixed = sorted(set(changes) - RUNTIME_FIELDS)
        if fixed:
            raise ValueError(
                f"cannot change {', '.join(fixed)} while running; changeable: "
                f"{', '.join(sorted(RUNTIME_FIELDS))}"
            )
        merged = {**self.profile.model_dump(), **changes}
        self.profile = SimProfile.model_validate(merged)  # validates ranges
        return self.profile
