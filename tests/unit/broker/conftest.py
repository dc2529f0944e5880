"""kombu's own Redis connection and channel, without a Redis server: redis-py connects
only when it sends a command, and the PING a channel sends at creation is answered here."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
from kombu import Connection
from kombu.transport import redis as kombu_redis


@pytest.fixture
def connection(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A kombu connection with kombu's own Redis transport, and no Redis server."""
    monkeypatch.setattr(redis.Redis, "ping", lambda self, **_: True)
    connection = Connection("redis://127.0.0.1:1/0", transport=kombu_redis.Transport)
    try:
        yield connection
    finally:
        connection.release()


@pytest.fixture
def channel(connection: Any) -> Iterator[Any]:
    """kombu's Redis channel, consuming "spark1" then "spark2"."""
    channel = connection.default_channel
    for queue in ("spark1", "spark2"):
        channel.basic_consume(queue, True, lambda message: None, f"tag-{queue}")
    yield channel
    channel._in_poll = None  # else closing it reads the reply of a stand-in's poll
    channel.__dict__.pop("client", None)  # a stand-in client, if a test set one
