"""Cluster-wide in-flight limits, and the line of work waiting for them, in Redis.

Each service has a sorted set of holders -> expiry (milliseconds on Redis' own clock,
so hosts need not agree on the time), and a line: a sorted set of the units of work
waiting for a slot, scored by priority band (interactive first) then arrival. Lua
scripts change both atomically, so every worker process and thread of every node
shares one limit and one line. A holder renews its lease while its call runs; a
worker that is killed stops renewing, and its slot frees itself after the TTL.

A caller that finds no slot free (or a line ahead of it) joins the line and holds
nothing while it waits. A freed slot is handed to the head of the line at once: it is
reserved for that unit (a holder named `reserved:<unit>`, with the lease TTL) and the
unit is returned to whoever freed the slot, who publishes its message. The unit's
task then claims the reservation as its lease. Nothing polls: a slot changes hands
when it is released, when a caller joins the line and finds a slot an expired lease
freed, or when the reconciler drains the lines (`drain`).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import redis

log = logging.getLogger(__name__)

# A line's score: the priority band (0 interactive, 1 background) times this, plus the
# unit's arrival number in its service's line (a counter in Redis, so that units that
# arrive in one millisecond keep their order); the sum stays an exact double.
BAND = 10**13
RESERVED = "reserved:"  # the holder name of a reserved slot is this and the unit's key

# Shared by the scripts: the current time, the two constants above (RESERVED, BAND),
# and handing free slots to the line's head. hand_off returns whether `own` (the
# caller's unit) was at the head and now holds `own_holder`, and the units handed a
# reservation, as {unit, score, ...}.
_COMMON = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local RESERVED, BAND = 'reserved:', 10000000000000
local function hand_off(holders, line, limit, ttl, own, own_holder)
  local handed, admitted = {}, 0
  local free = limit - redis.call('ZCARD', holders)
  while free > 0 do
    local head = redis.call('ZRANGE', line, 0, 0, 'WITHSCORES')
    if #head == 0 then break end
    redis.call('ZREM', line, head[1])
    if head[1] == own then
      redis.call('ZADD', holders, now + ttl, own_holder)
      admitted = 1
    else
      redis.call('ZADD', holders, now + ttl, RESERVED .. head[1])
      handed[#handed + 1] = head[1]
      handed[#handed + 1] = head[2]
    end
    free = free - 1
  end
  if admitted == 1 or #handed > 0 then redis.call('PEXPIRE', holders, ttl * 2) end
  return admitted, handed
end
"""

# KEYS: holders, line, the line's arrival counter, and optionally the service's health
# reading (a JSON string, `sparkjobs.dispatch.health.Reading`).
# ARGV: holder, limit, ttl_ms, unit ('' for none), band (0/1), join (0/1), and with the
# reading, the state that admits ("up").
# Returns {admitted (0/1), holders, place in line (0-based, -1: not in line), the
# reading or nil, handed units}. A reading in any other state admits nobody and joins
# nothing: the caller reads why.
ACQUIRE = (
    _COMMON
    + """
local holders, line = KEYS[1], KEYS[2]
local holder, limit, ttl, unit = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
redis.call('ZREMRANGEBYSCORE', holders, '-inf', now)
local reading = false
if KEYS[4] then
  reading = redis.call('GET', KEYS[4])
  if reading then
    local ok, decoded = pcall(cjson.decode, reading)
    if ok and type(decoded) == 'table' and decoded['state'] ~= ARGV[7] then
      return {0, redis.call('ZCARD', holders), -1, reading, {}}
    end
  end
end
local function take()
  redis.call('ZADD', holders, now + ttl, holder)
  redis.call('PEXPIRE', holders, ttl * 2)
  if unit ~= '' then redis.call('ZREM', line, unit) end
  return {1, redis.call('ZCARD', holders), -1, reading, {}}
end
if redis.call('ZSCORE', holders, holder) then return take() end
if unit ~= '' then
  local reserved = RESERVED .. unit
  if reserved ~= holder and redis.call('ZREM', holders, reserved) == 1 then return take() end
end
local held = redis.call('ZCARD', holders)
if held < limit and redis.call('ZCARD', line) == 0 then return take() end
if ARGV[6] ~= '1' or unit == '' then
  return {0, held, -1, reading, {}}
end
if not redis.call('ZSCORE', line, unit) then
  local arrival = redis.call('INCR', KEYS[3]) % BAND
  redis.call('ZADD', line, tonumber(ARGV[5]) * BAND + arrival, unit)
end
local admitted, handed = hand_off(holders, line, limit, ttl, unit, holder)
local place = -1
if admitted == 0 then place = redis.call('ZRANK', line, unit) end
return {admitted, redis.call('ZCARD', holders), place, reading, handed}
"""
)

# KEYS: holders, line. ARGV: holder ('' for none), limit, ttl_ms.
# Gives the holder's slot back and hands every free slot to the line's head.
# Returns the handed units {unit, score, ...}.
RELEASE = (
    _COMMON
    + """
if ARGV[1] ~= '' then redis.call('ZREM', KEYS[1], ARGV[1]) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local _, handed = hand_off(KEYS[1], KEYS[2], tonumber(ARGV[2]), tonumber(ARGV[3]), '', '')
return handed
"""
)

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
class Handed:
    """A unit of work that was handed a reserved slot: its message must be published."""

    unit: str  # the unit's key (`sparkjobs.broker.units.Unit.key`)
    interactive: bool


@dataclass(frozen=True)
class Attempt:
    """What one try to take a lease found."""

    admitted: bool
    held: int  # holders after the try (reservations included)
    place: int | None = None  # 0-based place in the service's line; None: not in it
    health: bytes | None = None  # the reading read with it (`try_acquire(health=)`)
    handed: tuple[Handed, ...] = ()  # units the try handed a slot to (to publish)


@dataclass(frozen=True)
class Lease:
    """A slot of a service, held by `holder` until released or expired; `limit` is the
    service's limit it was taken under (what a release hands on)."""

    service: str
    holder: str
    limit: int = field(default=1, compare=False)


def reservation(unit: str) -> str:
    """The holder name of a slot reserved for `unit` until its task claims it."""
    return RESERVED + unit


def _handed(flat: list[Any]) -> tuple[Handed, ...]:
    units, scores = flat[0::2], flat[1::2]
    return tuple(
        Handed(_text(unit), int(float(_text(score))) // BAND == 0)
        for unit, score in zip(units, scores, strict=True)
    )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Leases:
    """The lease sets and lines of every service, under `prefix` in one Redis.

    Args:
        client: a redis-py client.
        key: builds a key from parts (`sparkjobs.broker.client.key` bound to the config).
        ttl_s: how long a lease (or a reservation) lives without renewal.
    """

    def __init__(self, client: redis.Redis, key: Callable[..., str], *, ttl_s: float) -> None:
        self.client = client
        self.key = key
        self.ttl_ms = max(1, round(ttl_s * 1000))
        self._acquire: Any = client.register_script(ACQUIRE)
        self._release: Any = client.register_script(RELEASE)
        self._renew: Any = client.register_script(RENEW)
        self._count: Any = client.register_script(COUNT)

    def holders_key(self, service: str) -> str:
        return self.key("lease", service)

    def line_key(self, service: str) -> str:
        return self.key("line", service)

    def arrivals_key(self, service: str) -> str:
        return self.key("line", service, "arrivals")

    def try_acquire(
        self,
        service: str,
        limit: int,
        *,
        holder: str | None = None,
        unit: str = "",
        interactive: bool = False,
        join: bool = False,
        health: tuple[str, str] | None = None,
    ) -> tuple[Lease | None, Attempt]:
        """Take a slot of `service`: the one reserved for `unit`, or a free one when
        nobody waits in its line; else, with `join`, wait in the line.

        With `health`, the service's health reading is read in the same round trip
        (`Attempt.health`), and a reading in any other state than the healthy one
        admits nobody and joins nothing; no reading at all admits as usual.

        Args:
            holder: the lease's id (default: a fresh one).
            unit: the unit of work asking (its key), stable across tries: it names
                its place in the line and the slot reserved for it.
            interactive: interactive work waits ahead of background work.
            join: join the line when no slot can be taken now (needs `unit`); a slot
                an expired lease left free is then handed to the line's head, which
                may be the caller, and to others (`Attempt.handed`, to publish).
            health: the key of the service's health reading and the state that admits
                (the caller's health model, not this module's).
        """
        holder = holder or uuid.uuid4().hex
        keys = [self.holders_key(service), self.line_key(service), self.arrivals_key(service)]
        args: list[Any] = [holder, limit, self.ttl_ms, unit, 0 if interactive else 1, int(join)]
        if health is not None:
            keys.append(health[0])
            args.append(health[1])
        admitted, held, place, reading, handed = self._acquire(keys=keys, args=args)
        attempt = Attempt(
            bool(admitted), int(held), None if int(place) < 0 else int(place),
            reading or None, _handed(handed),
        )  # fmt: skip
        return (Lease(service, holder, limit) if attempt.admitted else None), attempt

    def renew(self, lease: Lease) -> bool:
        """Extend the lease by the TTL; False when it had expired (and was dropped)."""
        return bool(
            self._renew(keys=[self.holders_key(lease.service)], args=[lease.holder, self.ttl_ms])
        )

    def release(self, lease: Lease) -> tuple[Handed, ...]:
        """Give the slot back; the units it was handed to, reserved, to publish."""
        return self.drain(lease.service, lease.limit, holder=lease.holder)

    def drain(self, service: str, limit: int, *, holder: str = "") -> tuple[Handed, ...]:
        """Hand every free slot of `service` to the head of its line (after giving
        `holder`'s back); the units handed a reservation, to publish."""
        keys = [self.holders_key(service), self.line_key(service)]
        return _handed(self._release(keys=keys, args=[holder, limit, self.ttl_ms]))

    def held(self, service: str) -> int:
        """How many live leases (and reservations) `service` has now."""
        return int(self._count(keys=[self.holders_key(service)]))

    def place(self, service: str, unit: str) -> int | None:
        """`unit`'s 0-based place in `service`'s line; None when it is not in it."""
        found = self.client.zrank(self.line_key(service), unit)
        return None if found is None else int(found)  # type: ignore[arg-type]

    def waiting(self, service: str) -> int:
        """How many units wait in `service`'s line."""
        return int(self.client.zcard(self.line_key(service)))

    def lined(self, service: str) -> list[str]:
        """The units in `service`'s line, first first."""
        return [_text(unit) for unit in self.client.zrange(self.line_key(service), 0, -1)]


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
