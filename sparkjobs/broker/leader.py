"""A lock in Redis that makes one process of many the active one (the leader).

Beat holds one to be the active scheduler, the workers one to pick the reconciler
that runs. Every tick runs one Lua script: renew the key if it holds our token, else take it
if it is free (`SET NX PX`), else stand by; a clean stop deletes it. A killed beat
stops renewing, the key expires after `ttl_s`, and a standby's next tick takes it:
failover within ttl_s plus one tick. A restarted Redis may bring the key back from
its append-only file: a holder that lost track of it meanwhile (Redis did not
answer) renews its own token instead of waiting for it to expire.
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import redis

logger = logging.getLogger(__name__)

_HOLD = """
local current = redis.call('get', KEYS[1])
if current == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
if not current then
  redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


class LeaderLock:
    """One holder at a time, identified by a random token; `role` names it in logs."""

    def __init__(self, client: redis.Redis, key: str, *, ttl_s: float, role: str) -> None:
        self.client = client
        self.key = key
        self.role = role
        self.ttl_ms = int(ttl_s * 1000)
        self.token = uuid.uuid4().hex
        self.held = False
        self._warned = False

    def hold(self) -> bool:
        """Renew the lock if we hold it, else try to take it; True while we hold it.

        A Redis that does not answer means "not held": a leader that cannot prove
        it is the only one acts on nothing (a scheduler fires nothing).
        """
        import redis as redis_lib

        try:
            self.held = bool(self.client.eval(_HOLD, 1, self.key, self.token, self.ttl_ms))
        except (redis_lib.RedisError, OSError) as exc:
            if not self._warned:
                logger.warning("%s: cannot reach Redis for its lock (%s)", self.role, exc)
                self._warned = True
            self.held = False
            return False
        self._warned = False
        return self.held

    def holder(self) -> str | None:
        """The token of the current holder, if any."""
        value = self.client.get(self.key)
        return value.decode() if isinstance(value, bytes) else None

    def release(self) -> None:
        """Give the lock up at once (on a clean stop), if we hold it."""
        import redis as redis_lib

        if not self.held:
            return
        self.held = False
        try:
            self.client.eval(_RELEASE, 1, self.key, self.token)
        except (redis_lib.RedisError, OSError) as exc:
            logger.warning("%s: could not release its lock (%s); it expires", self.role, exc)
