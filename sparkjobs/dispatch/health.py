"""Service health: each node's worker probes its servers and publishes what it found.

A reading is up, loading, overloaded or down, with a detail for people (what the
probe saw), for a server that is not up the fix that follows from it, and the time
the state began. An up reading may be marked busy: every slot of the service is held,
or its probe waited behind a call in progress (a serial server such as the Orpheus
front-end answers nothing else while it synthesizes). Busy is not a state of its own:
a busy server is reachable and admits the next unit of its line like any up server.
A reading is published in Redis with a TTL, so a reading nobody refreshes
(the node's worker is gone) disappears rather than lying; no reading means unknown,
and unknown does not hold work back. The probes themselves, by kind, are
`sparkjobs.dispatch.probe`.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    import redis

    from sparkjobs.config import Config


class ServerState(StrEnum):
    UP = "up"
    LOADING = "loading"
    OVERLOADED = "overloaded"
    DOWN = "down"

    @property
    def reachable(self) -> bool:
        """Whether a call could be answered at all (overloaded servers answer, slowly)."""
        return self in (ServerState.UP, ServerState.OVERLOADED)


@dataclass(frozen=True)
class Reading:
    """One service's health: its state, why, since when, and when it was checked."""

    service: str
    state: ServerState
    detail: str
    since: float  # epoch seconds when this state began
    checked: float  # epoch seconds of the probe

    @classmethod
    def from_json(cls, text: str | bytes) -> Reading:
        data = json.loads(text)
        return cls(
            service=str(data["service"]),
            state=ServerState(data["state"]),
            detail=str(data["detail"]),
            since=float(data["since"]),
            checked=float(data["checked"]),
            busy=bool(data.get("busy", False)),  # absent from older workers' readings
            fix=str(data.get("fix", "")),
        )

    busy: bool = False  # up, with every slot taken (or the probe waited behind a call)
    fix: str = ""  # for a server that is not up: what would fix it, from what was seen

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @property
    def label(self) -> str:
        """The state for people: "busy" for a busy up server, else the state's name."""
        return "busy" if self.busy and self.state is ServerState.UP else self.state.value

    def describe(self, url: str, now: float) -> str:
        """E.g. "gemma (http://...) is down for 42 s: connection refused; fix: ..."."""
        for_s = max(0.0, now - self.since)
        detail = f": {self.detail}" if self.detail else ""
        fix = f"; fix: {self.fix}" if self.fix else ""
        return f"{self.service} ({url}) is {self.label} for {for_s:.0f} s{detail}{fix}"


@dataclass(frozen=True)
class Probe:
    """What a probe found, before it is dated and published."""

    state: ServerState
    detail: str = ""
    busy: bool = False
    fix: str = ""


def busy_when_full(probe: Probe, held: int, limit: int) -> Probe:
    """`probe`, marked busy when it found the server up with all `limit` slots held."""
    if probe.state is not ServerState.UP or probe.busy or held < limit:
        return probe
    detail = probe.detail or f"all {limit} slot(s) in use"
    return Probe(ServerState.UP, detail, busy=True)


class HealthBoard:
    """Published readings in Redis: `health:<service>`, each with a TTL."""

    def __init__(self, client: redis.Redis, config: Config) -> None:
        from sparkjobs.broker.client import key

        self.client = client
        self.config = config
        self._prefix = key(config, "health", "")

    def key(self, service: str) -> str:
        """The Redis key of `service`'s reading."""
        return self._prefix + service

    def read(self, service: str) -> Reading | None:
        """The live reading of `service`; None when nobody published one lately."""
        raw = self.client.get(self.key(service))
        return None if raw is None else Reading.from_json(cast(bytes, raw))

    def publish(self, service: str, probe: Probe, *, now: float | None = None) -> Reading:
        """Publish `probe` as `service`'s reading; the state keeps its start time."""
        now = time.time() if now is None else now
        previous = self.read(service)
        since = previous.since if previous and previous.state == probe.state else now
        reading = Reading(service, probe.state, probe.detail, since, now, probe.busy, probe.fix)
        ttl_ms = max(1, round(self.config.dispatch.health_ttl_s * 1000))
        self.client.set(self.key(service), reading.to_json(), px=ttl_ms)
        return reading
