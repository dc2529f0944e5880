"""kombu's Redis transport, its channel keeping one client for its plain commands.

kombu's Redis channel builds a new redis-py client for every command it sends outside
its event loop: each published message, each queue length or purge. Building one
registers redis-py's response callbacks, about 170 of them, which costs more than the
LPUSH it then sends (docs/benchmarks.md). A redis-py client on a connection pool is
safe to share between threads (each command takes a connection from the pool), so
this channel keeps one per pool and builds a new one only when kombu replaced the
pool (after a lost connection).

`sparkjobs.app` uses this transport for `redis://` brokers; kombu's own serves the
other schemes (`redis+socket://`, `rediss://`), whose URLs it reads its own way.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis


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
