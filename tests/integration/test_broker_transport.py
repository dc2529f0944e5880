"""kombu's Redis channel, keeping one client for its plain commands (`sparkjobs.broker_transport`).

kombu builds a redis-py client for every message it publishes; the app's channel keeps
one per connection pool, on every Redis URL scheme (the services leg's `redis://`, the
embedded leg's `redis+socket://`), and the URL reads back with its own scheme (Flower's
broker page parses it). Every message reaches its queue.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlsplit

import pytest
from kombu import Connection, Exchange, Queue

from sparkjobs.app import create_app
from sparkjobs.broker import queue_keys
from sparkjobs.broker_transport import Transport, install
from sparkjobs.execution.dispatch import STEP_TASK
from tests.fixtures_cluster import Cluster
from tests.fixtures_services import Broker

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
