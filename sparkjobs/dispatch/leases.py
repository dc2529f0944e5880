"""Cluster-wide in-flight limits: a lease per call to a model server, held in Redis.

Each service has a sorted set of holder -> expiry (milliseconds on Redis' own clock,
so hosts need not agree on the time). A Lua script drops expired holders and admits a
new one only under the service's `max_in_flight`, atomically, so every worker process
and thread of every node shares one limit. A holder renews its lease while its call
runs; a worker that is killed stops renewing, and its slot frees itself after the TTL.

Interactive work goes first: an interactive acquirer that finds no slot registers as
a waiter (with a TTL of its own), and background acquirers leave as many free slots
as there are interactive waiters.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import redis

log = logging.getLogger(__name__)

# KEYS: holders zset, interactive waiters zset, and optionally the service's health
# reading (a JSON string, `sparkjobs.dispatch.health.Reading`).
# ARGV: holder, limit, ttl_ms, interactive (0/1), waiter, waiter_ttl_ms, and with the
# reading, the state that admits ("up").
# Returns {admitted (0/1), holders, interactive waiters, the reading or nil}. A reading
# in any other state admits nobody and registers no waiter: the caller reads why.
ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local reading = false
if KEYS[3] then
  reading = redis.call('GET', KEYS[3])
  if reading then
    local ok, decoded = pcall(cjson.decode, reading)
    if ok and type(decoded) == 'table' and decoded['state'] ~= ARGV[7] then
      return {0, redis.call('ZCARD', KEYS[1]), redis.call('ZCARD', KEYS[2]), reading}
    end
  end
end
local limit = tonumber(ARGV[2])
local interactive = ARGV[4] == '1'
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
  return {1, redis.call('ZCARD', KEYS[1]), redis.call('ZCARD', KEYS[2]), reading}
end
local held = redis.call('ZCARD', KEYS[1])
local waiting = redis.call('ZCARD', KEYS[2])
if interactive and redis.call('ZSCORE', KEYS[2], ARGV[5]) then
  waiting = waiting - 1
end
local free = limit - held
local admitted = free > 0
if admitted and not interactive then
  admitted = free > waiting
end
if admitted then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) * 2)
  if interactive then redis.call('ZREM', KEYS[2], ARGV[5]) end
  return {1, held + 1, waiting, reading}
end
if interactive then
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[6]), ARGV[5])
  if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[6]) * 2 then
    redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[6]) * 2)
  end
  waiting = waiting + 1
end
return {0, held, waiting, reading}
"""

# KEYS: holders zset. ARGV: holder, ttl_ms. Returns 1 if the lease was still held.
RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expiry = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not expiry or tonumber(expiry) <= now then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 0
end
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)
return 1
"""

# KEYS: holders zset. Returns the number of live holders.
COUNT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZCARD', KEYS[1])
"""


@dataclass(frozen=True)
class Attempt:
    """What one try to take a lease found."""

    admitted: bool
    held: int  # holders after the try
    interactive_waiting: int
    health: bytes | None = None  # the reading read with it (`try_acquire(health=)`)


@dataclass(frozen=True)
class Lease:
    """A slot of a service, held by `holder` until released or expired."""

    service: str
    holder: str


class Leases:
    """The lease sets of every service, under `prefix` in one Redis.

    Args:
        client: a redis-py client.
        key: builds a key from parts (`sparkjobs.broker.client.key` bound to the config).
        ttl_s: how long a lease lives without renewal.
    """

    def __init__(self, client: redis.Redis, key: Callable[..., str], *, ttl_s: float) -> None:
        self.client = client
        self.key = key
        self.ttl_ms = max(1, round(ttl_s * 1000))
        self._acquire: Any = client.register_script(ACQUIRE)
        self._renew: Any = client.register_script(RENEW)
        self._count: Any = client.register_script(COUNT)

    def holders_key(self, service: str) -> str:
        return self.key("lease", service)

    def waiters_key(self, service: str) -> str:
        return self.key("lease", service, "interactive")

    def try_acquire(
        self,
        service: str,
        limit: int,
        *,
        holder: str | None = None,
        interactive: bool = False,
        waiter: str = "",
        waiter_ttl_s: float = 0.0,
        health: tuple[str, str] | None = None,
    ) -> tuple[Lease | None, Attempt]:
        """Take a slot of `service` if fewer than `limit` are held (and, for background
        work, more are free than interactive waiters want).

        With `health`, the service's health reading is read in the same round trip
        (`Attempt.health`), and a reading in any other state than the healthy one
        admits nobody; no reading at all admits as usual.

        Args:
            holder: the lease's id (default: a fresh one).
            interactive: whether the caller is interactive work.
            waiter: the caller's stable id across retries (a run's step or piece);
                an interactive caller that gets no slot is registered under it.
            waiter_ttl_s: how long that registration lasts without a new try.
            health: the key of the service's health reading and the state that admits
                (the caller's health model, not this module's).
        """
        holder = holder or uuid.uuid4().hex
        keys = [self.holders_key(service), self.waiters_key(service)]
        waiter_ttl_ms = max(1, round(waiter_ttl_s * 1000))
        args = [holder, limit, self.ttl_ms, int(interactive), waiter or holder, waiter_ttl_ms]
        if health is not None:
            keys.append(health[0])
            args.append(health[1])
        admitted, held, waiting, reading = self._acquire(keys=keys, args=args)
        attempt = Attempt(bool(admitted), int(held), int(waiting), reading)
        return (Lease(service, holder) if attempt.admitted else None), attempt

    def renew(self, lease: Lease) -> bool:
        """Extend the lease by the TTL; False when it had expired (and was dropped)."""
        return bool(
            self._renew(keys=[self.holders_key(lease.service)], args=[lease.holder, self.ttl_ms])
        )

    def release(self, lease: Lease) -> None:
        """Give the slot back."""
        self.client.zrem(self.holders_key(lease.service), lease.holder)

    def held(self, service: str) -> int:
        """How many live leases `service` has now."""
        return int(self._count(keys=[self.holders_key(service)]))

    def forget_waiter(self, service: str, waiter: str) -> None:
        """Drop an interactive waiter's registration (it gave up or finished)."""
        self.client.zrem(self.waiters_key(service), waiter)


class Renewer:
    """One thread per process that renews every lease held in it, every TTL / 3.

    A lease whose call outlives `max_hold_s` is no longer renewed: a thread stuck in
    a call past the step's time limit must not hold the slot for ever.
    """

    def __init__(self, leases: Leases, *, max_hold_s: float) -> None:
        self.leases = leases
        self.max_hold_s = max_hold_s
        self._held: dict[Lease, float] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, lease: Lease) -> None:
        with self._lock:
            self._held[lease] = time.monotonic() + self.max_hold_s
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="sparkjobs-lease-renewer", daemon=True
                )
                self._thread.start()

    def remove(self, lease: Lease) -> None:
        with self._lock:
            self._held.pop(lease, None)

    def _run(self) -> None:
        interval_s = self.leases.ttl_ms / 3000
        while not self._wake.wait(interval_s):
            now = time.monotonic()
            with self._lock:
                due = [lease for lease, until in self._held.items() if until > now]
            for lease in due:
                try:
                    if not self.leases.renew(lease):
                        log.warning("lease %s of %s had expired before renewal",
                                    lease.holder, lease.service)  # fmt: skip
                except Exception:  # a daemon thread must outlive a Redis blip
                    log.warning("could not renew a lease of %s", lease.service, exc_info=True)
