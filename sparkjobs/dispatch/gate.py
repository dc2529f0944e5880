"""The gate before a call to a model server: health, backpressure, then a lease.

`Gate.check` answers with a lease (go now) or a `Wait`: a server that is down or
loading makes the step wait with a growing delay, until the job's wait deadline,
after which `ServerUnavailable` says which server and for how long; an overloaded
server holds work back briefly; a full service puts the unit in its line
(`sparkjobs.dispatch.leases`), where it holds no worker thread and no message until a
slot is handed to it. Whoever frees or finds a slot for others hands it on: the gate
calls `hand` with the units to publish.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from sparkjobs.broker.client import key
from sparkjobs.dispatch.health import HealthBoard, Probe, Reading, ServerState
from sparkjobs.dispatch.leases import Handed, Lease, Leases, Renewer, reservation
from sparkjobs.dispatch.retry import max_countdown_s
from sparkjobs.dispatch.waits import Wait, WaitKind, in_line
from sparkjobs.errors import PermanentError

if TYPE_CHECKING:
    import redis

    from sparkjobs.config import Config

log = logging.getLogger(__name__)

BACKPRESSURE_RETRY_S = (0.5, 2.0)
# Who publishes the messages of units handed a slot: (service, units).
Hand = Callable[[str, "tuple[Handed, ...]"], None]


class Seat(StrEnum):
    """Where a unit stands before its message is published (`Gate.reserve`)."""

    RESERVED = "reserved"  # a slot is reserved for it: publish, naming the reservation
    IN_LINE = "in line"  # it waits in its service's line: publish nothing now
    OPEN = "open"  # the server is not up: publish; its task waits for the server


class ServerUnavailable(PermanentError):
    """A server stayed down or loading past the job's wait deadline; the step fails."""


def health_delay_s(
    waited_s: float, *, cap_s: float, rand: Callable[[], float] = random.random
) -> float:
    """The countdown before checking a down server again: half the time waited so far
    (at least 1 s, at most `cap_s`), with jitter so waiting steps spread out."""
    ceiling = min(cap_s, max(1.0, waited_s / 2))
    return ceiling * (0.5 + rand() / 2)


class Gate:
    """Admission to the services of one cluster, for the threads of one process."""

    def __init__(self, config: Config, client: redis.Redis, hand: Hand | None = None) -> None:
        self.config = config
        self.client = client
        self.hand = hand
        self.leases = Leases(client, functools.partial(key, config),
                             ttl_s=config.dispatch.lease_ttl_s)  # fmt: skip
        self.board = HealthBoard(client, config)
        self.renewer = Renewer(self.leases, max_hold_s=config.tasks.time_limit_s)
        self.cap_s = min(config.dispatch.max_wait_delay_s, max_countdown_s(config.tasks))

    def check(
        self,
        service: str,
        *,
        unit: str,
        interactive: bool,
        health_wait_since: datetime | None,
        now: datetime,
        join: bool = True,
    ) -> Lease | Wait:
        """A lease of `service`, or why not and when to try again.

        Args:
            unit: the caller's unit of work (its key), stable across retries.
            interactive: interactive work waits ahead of background work.
            health_wait_since: when this step began waiting for the server's health
                (None: it was not waiting for it).
            now: the current time (aware), for the wait deadline.
            join: join the service's line when no slot is free (a lease wait then
                has a `place`); False: one try, leaving nothing behind.

        Raises:
            ServerUnavailable: the server has been down or loading past the deadline.
        """
        spec = self.config.services[service]
        limit = spec.in_flight_limit
        # One round trip: the health reading, and a slot (or a place in line) if the
        # reading allows one.
        lease, attempt = self.leases.try_acquire(
            service, limit, unit=unit, interactive=interactive, join=join,
            health=(self.board.key(service), ServerState.UP.value),
        )  # fmt: skip
        self._hand_on(service, attempt.handed)
        reading = None if attempt.health is None else Reading.from_json(attempt.health)
        if reading is not None and not reading.state.reachable:
            waited_s = (now - health_wait_since).total_seconds() if health_wait_since else 0.0
            deadline_s = self.config.dispatch.wait_deadline_s
            text = reading.describe(str(spec.url), time.time())
            if waited_s > deadline_s:
                then = ("Once it is fixed" if reading.fix else
                        "Fix: start or repair the server, then")  # fmt: skip
                raise ServerUnavailable(
                    f"gave up waiting for {text}; the step waited {waited_s:.0f} s, past "
                    f"dispatch.wait_deadline_s = {deadline_s:g}. {then} rerun the job "
                    "(`sparkjobs doctor` shows the server's state)"
                )
            return Wait(WaitKind.HEALTH, text, health_delay_s(waited_s, cap_s=self.cap_s))
        if reading is not None and reading.state is ServerState.OVERLOADED:
            text = f"{service} is overloaded: {reading.detail}"
            return Wait(
                WaitKind.BACKPRESSURE, text, min(self.cap_s, _between(BACKPRESSURE_RETRY_S))
            )
        if lease is not None:
            self.renewer.add(lease)
            return lease
        return Wait(WaitKind.LEASE, in_line(service, attempt.place, limit), 0.0, attempt.place)

    def reserve(self, service: str, unit: str, *, interactive: bool) -> Seat:
        """Before `unit`'s message is published: a slot reserved for it (publish it,
        naming the reservation), a place in the line (publish nothing: the slot is
        handed to it, and its message published, when its turn comes), or, when the
        server is not up, neither (publish it: its task waits for the server)."""
        limit = self.config.services[service].in_flight_limit
        lease, attempt = self.leases.try_acquire(
            service, limit, holder=reservation(unit), unit=unit, interactive=interactive,
            join=True, health=(self.board.key(service), ServerState.UP.value),
        )  # fmt: skip
        self._hand_on(service, attempt.handed)
        if lease is not None:
            return Seat.RESERVED
        return Seat.IN_LINE if attempt.place is not None else Seat.OPEN

    def give_back(self, service: str, unit: str) -> None:
        """A task ends without having claimed the slot reserved for its unit (its step
        had finished, or it waits for its server's health): the slot is handed on."""
        limit = self.config.services[service].in_flight_limit
        self._hand_on(service, self.leases.release(Lease(service, reservation(unit), limit)))

    def release(self, lease: Lease) -> None:
        """Give a slot back, handed at once to the head of the service's line."""
        self.renewer.remove(lease)
        self._hand_on(lease.service, self.leases.release(lease))

    def drain(self, service: str) -> int:
        """Hand every free slot of `service` to its line (slots that expired leases
        freed); how many units were handed one."""
        handed = self.leases.drain(service, self.config.services[service].in_flight_limit)
        self._hand_on(service, handed)
        return len(handed)

    def _hand_on(self, service: str, handed: tuple[Handed, ...]) -> None:
        if handed and self.hand is not None:
            self.hand(service, handed)
        elif handed:  # nobody here can publish: the reservations expire, and drain again
            log.warning("%d unit(s) of %s were handed a slot with no publisher", len(handed),
                        service)  # fmt: skip

    def report_unreachable(self, service: str, detail: str) -> None:
        """A call found the server unreachable: say so now, before the next probe does."""
        self.board.publish(service, Probe(ServerState.DOWN, detail))


def _between(bounds: tuple[float, float]) -> float:
    low, high = bounds
    return low + (high - low) * random.random()
