"""The gate before a call to a model server: health, backpressure, then a lease.

`Gate.check` answers with a lease (go now) or a `Wait` (try again after its delay):
a server that is down or loading makes the step wait with a growing delay, until the
job's wait deadline, after which `ServerUnavailable` says which server and for how
long; an overloaded server holds work back briefly; a full service makes the thread
wait a moment for a slot (woken as soon as one is released), then hand its message
back with a short countdown rather than hold a worker thread.
"""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from sparkjobs.broker.client import key
from sparkjobs.dispatch.health import HealthBoard, Probe, Reading, ServerState
from sparkjobs.dispatch.leases import Lease, Leases, Renewer
from sparkjobs.dispatch.retry import max_countdown_s
from sparkjobs.dispatch.waits import Wait, WaitKind
from sparkjobs.errors import PermanentError

if TYPE_CHECKING:
    import redis

    from sparkjobs.config import Config

WAKE_S = 0.25  # a waiting thread re-checks at least this often (expired leases free no token)
LEASE_RETRY_S = (0.05, 0.3)  # countdown range after a thread gave up polling for a lease
BACKPRESSURE_RETRY_S = (0.5, 2.0)


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

    def __init__(self, config: Config, client: redis.Redis) -> None:
        self.config = config
        self.client = client
        self.leases = Leases(client, functools.partial(key, config),
                             ttl_s=config.dispatch.lease_ttl_s)  # fmt: skip
        self.board = HealthBoard(client, config)
        self.renewer = Renewer(self.leases, max_hold_s=config.tasks.time_limit_s)
        self.cap_s = min(config.dispatch.max_wait_delay_s, max_countdown_s(config.tasks))

    def check(
        self,
        service: str,
        *,
        waiter: str,
        interactive: bool,
        health_wait_since: datetime | None,
        now: datetime,
        poll: bool = True,
    ) -> Lease | Wait:
        """A lease of `service`, or why not and when to try again.

        Args:
            waiter: the caller's id, stable across retries (run, step and piece).
            interactive: interactive work takes free slots before background work.
            health_wait_since: when this step began waiting for the server's health
                (None: it was not waiting for it).
            now: the current time (aware), for the wait deadline.
            poll: wait up to `dispatch.lease_poll_s` for a slot; False: one try only.

        Raises:
            ServerUnavailable: the server has been down or loading past the deadline.
        """
        spec = self.config.services[service]
        limit = spec.in_flight_limit
        # One round trip: the health reading, and a slot if the reading allows one.
        lease, attempt = self.leases.try_acquire(
            service, limit, interactive=interactive, waiter=waiter,
            waiter_ttl_s=self._waiter_ttl_s(),
            health=(self.board.key(service), ServerState.UP.value),
        )  # fmt: skip
        reading = None if attempt.health is None else Reading.from_json(attempt.health)
        if reading is not None and not reading.state.reachable:
            waited_s = (now - health_wait_since).total_seconds() if health_wait_since else 0.0
            deadline_s = self.config.dispatch.wait_deadline_s
            text = reading.describe(str(spec.url), time.time())
            if waited_s > deadline_s:
                raise ServerUnavailable(
                    f"gave up waiting for {text}; the step waited {waited_s:.0f} s, past "
                    f"dispatch.wait_deadline_s = {deadline_s:g}. Fix: start or repair the "
                    "server (`sparkjobs doctor` shows its state), then rerun the job"
                )
            return Wait(WaitKind.HEALTH, text, health_delay_s(waited_s, cap_s=self.cap_s))
        if reading is not None and reading.state is ServerState.OVERLOADED:
            text = f"{service} is overloaded: {reading.detail}"
            return Wait(
                WaitKind.BACKPRESSURE, text, min(self.cap_s, _between(BACKPRESSURE_RETRY_S))
            )
        if lease is None and poll:
            poll_s = self.config.dispatch.lease_poll_s
            lease = self._poll(service, limit, poll_s, waiter=waiter, interactive=interactive)
        if lease is not None:
            self.renewer.add(lease)
            return lease
        ahead = "" if interactive else " (or kept for interactive work)"
        text = f"all {limit} slot(s) of {service} are in use{ahead}"
        return Wait(WaitKind.LEASE, text, min(self.cap_s, _between(LEASE_RETRY_S)))

    def _poll(
        self, service: str, limit: int, poll_s: float, *, waiter: str, interactive: bool
    ) -> Lease | None:
        """After a try that found no slot: wait up to `poll_s` for one, woken when one
        is released, and try again."""
        until = time.monotonic() + poll_s
        while (left := until - time.monotonic()) > 0:
            self.client.blpop([self.freed_key(service)], timeout=min(WAKE_S, left))
            lease, _ = self.leases.try_acquire(
                service, limit, interactive=interactive, waiter=waiter,
                waiter_ttl_s=self._waiter_ttl_s(),
            )  # fmt: skip
            if lease is not None:
                return lease
        return None

    def _waiter_ttl_s(self) -> float:
        """An interactive waiter stays registered a little beyond its next try."""
        return self.config.dispatch.lease_poll_s + LEASE_RETRY_S[1] + 5.0

    def freed_key(self, service: str) -> str:
        return key(self.config, "lease", service, "freed")

    def release(self, lease: Lease) -> None:
        """Give a slot back and wake one thread waiting for it, in any process."""
        self.renewer.remove(lease)
        freed = self.freed_key(lease.service)
        # One round trip: the slot is given back before the wake-up is pushed.
        pipe = self.client.pipeline(transaction=False)
        pipe.zrem(self.leases.holders_key(lease.service), lease.holder)
        pipe.lpush(freed, "1")
        pipe.ltrim(freed, 0, 63)
        pipe.pexpire(freed, 2000)
        pipe.execute()

    def report_unreachable(self, service: str, detail: str) -> None:
        """A call found the server unreachable: say so now, before the next probe does."""
        self.board.publish(service, Probe(ServerState.DOWN, detail))


def _between(bounds: tuple[float, float]) -> float:
    low, high = bounds
    return low + (high - low) * random.random()
