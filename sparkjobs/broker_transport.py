"""kombu's Redis transport, its channel keeping one client for its plain commands.

kombu's Redis channel builds a new redis-py client for every command it sends outside
its event loop: each published message, each queue length or purge. Building one
registers redis-py's response callbacks, about 170 of them, which costs more than the
LPUSH it then sends (docs/benchmarks.md). A redis-py client on a connection pool is
safe to share between threads (each command takes a connection from the pool), so
this channel keeps one per pool and builds a new one only when kombu replaced the
pool (after a lost connection).

`install` makes it the transport of kombu's `redis` and `rediss` names in this
process, so broker URLs keep their schemes (`redis://`, `rediss://`,
`redis+socket://`) wherever they are read back, as Flower's broker page does.
"""

from __future__ import annotations

from typing import Any

import kombu.transport
from kombu.transport import redis as kombu_redis

# kombu's names for its Redis transport, which this one takes over.
NAMES = ("redis", "rediss")


class Channel(kombu_redis.Channel):
    _plain_client: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        build = super()._create_client  # type: ignore[misc]  # not in kombu's stubs
        if asynchronous:  # the event loop's own: kombu keeps it already
            return build(asynchronous=True)
        client = self._plain_client
        if client is None or client.connection_pool is not self.pool:
            client = self._plain_client = build()
        return client


class Transport(kombu_redis.Transport):
    Channel = Channel


def install() -> None:
    """Serve kombu's Redis URLs with `Transport` from now on, in this process."""
    path = f"{__name__}:{Transport.__name__}"
    for name in NAMES:
        if kombu.transport.TRANSPORT_ALIASES.get(name) == path:
            continue  # installed already (every app of the process calls this)
        kombu.transport.TRANSPORT_ALIASES[name] = path
        # kombu caches the class of each name it resolved: forget kombu's own.
        kombu.transport._transport_cache.pop(name, None)  # type: ignore[attr-defined]
