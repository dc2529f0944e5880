"""The worker's channel keeps one Redis client for kombu's bookkeeping of each message."""

from __future__ import annotations

import uuid

from kombu import Connection, Exchange, Queue

from sparkjobs.consumer import reuse_one_client
from tests.fixtures_services import Broker


def test_records_and_acknowledgements_share_one_client_and_still_work(broker: Broker) -> None:
    options = {"global_keyprefix": broker.prefix}
    with Connection(broker.url, transport_options=options) as connection:
        channel = connection.default_channel
        reuse_one_client(channel)
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
        # Received and not acknowledged: recorded (through the shared client) in the
        # transport's unacknowledged set, then removed by the acknowledgement.
        unacked = f"{broker.prefix}unacked"
        assert broker.client.hlen(unacked) == 1
        message.ack()
        assert broker.client.hlen(unacked) == 0


def test_another_pool_gets_its_own_client(broker: Broker) -> None:
    with Connection(broker.url) as connection:
        channel = connection.default_channel
        reuse_one_client(channel)
        shared = channel.Client(connection_pool=channel.pool)
        assert channel.Client(connection_pool=channel.pool) is shared
        other = channel.Client(connection_pool=channel.async_pool)
        assert other is not shared
        assert other.connection_pool is channel.async_pool
