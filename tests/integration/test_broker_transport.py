"""kombu's Redis channel, keeping one client for its plain commands (`sparkjobs.broker_transport`).

kombu builds a redis-py client for every message it publishes; the app's channel keeps
one per connection pool. On a `redis://` broker (the services leg) the app uses it; a
`redis+socket://` broker (the embedded leg) keeps kombu's own transport, which reads
such URLs its own way. Either way every message reaches its queue.
"""

from __future__ import annotations

from typing import Any

import pytest

from sparkjobs.app import create_app
from sparkjobs.broker import queue_keys
from sparkjobs.broker_transport import Transport
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
    own = config.broker.startswith("redis://")
    with app.connection_for_write() as connection:
        assert isinstance(connection.transport, Transport) == own
        channel = connection.default_channel
        first = channel._create_client()
        assert (channel._create_client() is first) == own  # kombu's: one per command
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
