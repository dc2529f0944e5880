"""The lock in Redis that makes one beat process the active scheduler.

Every tick runs one Lua script: renew the key if it holds our token, else take it
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


class SchedulerLock:
    """One holder at a time, identified by a random token."""

    def __init__(self, client: redis.Redis, key: str, *, ttl_s: float) -> None:
        self.client = client
        self.key = key
        self.ttl_ms = int(ttl_s * 1000)
        self.token = uuid.uuid4().hex
        self.held = False
        self._warned = False

    def hold(self) -> bool:
        """Renew the lock if we hold it, else try to take it; True while we hold it.

        A Redis that does not answer means "not held": a scheduler that cannot
        prove it is the only one fires nothing.
        """
        import redis as redis_lib

        try:
            self.held = bool(self.client.eval(_HOLD, 1, self.key, self.token, self.ttl_ms))
        except (redis_lib.RedisError, OSError) as exc:
            if not self._warned:
                logger.warning("beat: cannot reach Redis for the scheduler lock (%s)", exc)
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
            logger.warning("beat: could not release the scheduler lock (%s); it expires", exc)
