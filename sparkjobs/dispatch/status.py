"""Each service's health as every surface shows it: the workers' published readings.

The run page, the alerts, the metrics and `sparkjobs doctor` read the reading each
node's worker publishes (`sparkjobs.dispatch.health.HealthBoard`), the one dispatch
itself obeys, and never probe with timeouts of their own: a serial server that keeps
a probe waiting while it synthesizes is `busy`, everywhere, not `down` on one page and
up in dispatch. A service whose node has no worker publishing (none running, or its
reading expired) is `unknown`, said as such rather than guessed. Each comes with the
length of its service's line (`sparkjobs.dispatch.leases`).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from sparkjobs.dispatch.health import HealthBoard, Reading

if TYPE_CHECKING:
    import redis

    from sparkjobs.config import Config

log = logging.getLogger(__name__)

UNKNOWN = "unknown"
# States in which the server answers calls (busy and overloaded ones answer, later).
ANSWERING = frozenset({"up", "busy", "overloaded"})
READ_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class ServiceStatus:
    """One service's health as published, and its line; `state` is up, busy,
    overloaded, loading, down or unknown."""

    service: str
    node: str
    kind: str
    state: str
    detail: str
    since: float | None = None  # epoch seconds when the state began (None: unknown)
    checked: float | None = None  # epoch seconds of the probe behind the reading
    line: int | None = None  # units waiting in the service's line (None: not read)
    fix: str = ""  # for a server that is not up: the fix that follows from what was seen

    @property
    def known(self) -> bool:
        return self.state != UNKNOWN

    @property
    def ok(self) -> bool:
        """Whether the server answers calls (False for down, loading and unknown)."""
        return self.state in ANSWERING


def status_of(name: str, node: str, kind: str, reading: Reading | None) -> ServiceStatus:
    """The status a reading says (None: no worker of `node` publishes one)."""
    if reading is None:
        return ServiceStatus(name, node, kind, UNKNOWN,
                             f"no worker publishes readings for {node}")  # fmt: skip
    return ServiceStatus(name, node, kind, reading.label, reading.detail, reading.since,
                         reading.checked, fix=reading.fix)  # fmt: skip


def service_statuses(
    config: Config, client: redis.Redis, names: Iterable[str] | None = None
) -> list[ServiceStatus]:
    """The published status and line length of every service (or those named), in
    config order: one round trip."""
    from sparkjobs.broker.client import key
    from sparkjobs.dispatch.leases import Leases

    wanted = [n for n in (config.services if names is None else names) if n in config.services]
    board = HealthBoard(client, config)
    leases = Leases(client, functools.partial(key, config), ttl_s=config.dispatch.lease_ttl_s)
    pipe = client.pipeline(transaction=False)
    for name in wanted:
        pipe.get(board.key(name))
        pipe.zcard(leases.line_key(name))
    replies = pipe.execute()
    found = []
    for number, name in enumerate(wanted):
        raw, waiting = replies[2 * number], replies[2 * number + 1]
        spec = config.services[name]
        reading = None if raw is None else _reading(cast(bytes, raw))
        status = status_of(name, spec.node, spec.kind, reading)
        found.append(_with_line(status, int(waiting)))
    return found


def read_statuses(config: Config, names: Iterable[str] | None = None) -> list[ServiceStatus]:
    """`service_statuses` over a client of its own; a broker that does not answer
    makes every service unknown, saying why (it never raises)."""
    from sparkjobs.broker.client import describe, redis_client

    wanted = [n for n in (config.services if names is None else names) if n in config.services]
    try:
        client = redis_client(config, timeout_s=READ_TIMEOUT_S)
        try:
            return service_statuses(config, client, wanted)
        finally:
            client.close()
    except Exception as exc:  # a page, a scrape or an alert pass reports what it can
        log.warning("service health: the broker did not answer: %s", type(exc).__name__)
        said = f"the broker at {describe(config.broker)} did not answer ({type(exc).__name__})"
        specs = config.services
        return [ServiceStatus(n, specs[n].node, specs[n].kind, UNKNOWN, said) for n in wanted]


def _reading(raw: bytes) -> Reading | None:
    try:
        return Reading.from_json(raw)
    except (ValueError, KeyError, TypeError):  # a reading nobody can read is no reading
        return None


def _with_line(status: ServiceStatus, line: int) -> ServiceStatus:
    return ServiceStatus(status.service, status.node, status.kind, status.state, status.detail,
                         status.since, status.checked, line, status.fix)  # fmt: skip


def age_s(status: ServiceStatus, now: float | None = None) -> float | None:
    """How long the service has been in its state; None when unknown."""
    if status.since is None:
        return None
    return max(0.0, (time.time() if now is None else now) - status.since)
