"""A worker's record of unacknowledged messages, and its announcements of runs' ends, are
written once per loop turn; every message kombu would have restored is still restored."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from kombu import Connection, Exchange, Queue

from sparkjobs.broker.notify import announce_finished, finished_channel
from sparkjobs.jobs.define import chat, job
from sparkjobs.runs.submit import submit_job
from sparkjobs.runs.wait import wait_for_run
from sparkjobs.store.models import Status
from sparkjobs.worker.turn_writes import TurnWrites
from tests.support.cluster import Cluster
from tests.support.services import Broker

pytestmark = pytest.mark.redis

HANG_GUARD_S = 60.0


class Channel:
    """A kombu Redis channel with its writes queued per loop turn, and its queue."""

    def __init__(self, broker: Broker, connection: Connection) -> None:
        self.broker = broker
        self.connection = connection
        self.channel = connection.default_channel
        writes = TurnWrites.install(self.channel)
        assert writes is not None
        self.writes = writes
        self.name = f"q-{uuid.uuid4().hex[:8]}"
        self.queue = Queue(self.name, Exchange(self.name), routing_key=self.name)

    def publish(self, *numbers: int) -> None:
        with self.connection.Producer(self.channel) as producer:
            for n in numbers:
                producer.publish({"n": n}, exchange=self.queue.exchange, routing_key=self.name,
                                 declare=[self.queue], serializer="json")  # fmt: skip

    def get(self) -> Any:
        message = self.queue(self.channel).get(no_ack=False)
        assert message is not None
        return message

    def records(self) -> dict[bytes, bytes]:
        return self.broker.client.hgetall(f"{self.broker.prefix}unacked")  # type: ignore[return-value]

    def indexed(self) -> int:
        return int(self.broker.client.zcard(f"{self.broker.prefix}unacked_index"))

    def queued(self) -> list[int]:
        """The numbers of the messages back in the queue."""
        stored = self.broker.client.lrange(f"{self.broker.prefix}{self.name}", 0, -1)
        return sorted(json.loads(base64.b64decode(json.loads(m)["body"]))["n"] for m in stored)


@pytest.fixture
def channel(broker: Broker) -> Iterator[Channel]:
    options = {"global_keyprefix": broker.prefix}
    with Connection(broker.url, transport_options=options) as connection:
        yield Channel(broker, connection)


def test_records_are_written_at_the_flush_and_erased_at_the_next(channel: Channel) -> None:
    channel.publish(1, 2, 3)
    messages = [channel.get() for _ in range(3)]
    assert channel.records() == {}  # received, not yet written
    assert channel.writes.pending() == 3

    channel.writes.flush()
    records = channel.records()
    assert len(records) == 3
    assert channel.indexed() == 3
    # kombu's own format: the message as stored, its exchange and routing key.
    stored, exchange, routing_key = json.loads(records[messages[0].delivery_tag.encode()])
    assert (exchange, routing_key) == (channel.name, channel.name)
    assert stored["properties"]["delivery_tag"] == messages[0].delivery_tag

    messages[0].ack()
    messages[1].ack()
    assert len(channel.records()) == 3  # erased at the next flush, all at once
    channel.writes.flush()
    assert set(channel.records()) == {messages[2].delivery_tag.encode()}
    assert channel.indexed() == 1
    assert channel.writes.pending() == 0


def test_a_message_acknowledged_before_the_flush_is_never_written(channel: Channel) -> None:
    channel.publish(1)
    channel.get().ack()
    assert channel.writes.pending() == 0  # the queued record is dropped, nothing to erase
    channel.writes.flush()
    assert channel.records() == {}
    assert channel.indexed() == 0


def test_a_requeue_before_the_flush_puts_the_message_back(channel: Channel) -> None:
    channel.publish(7)
    message = channel.get()
    assert channel.queued() == []
    # kombu's requeue reads the message back from its record: written first, or lost.
    message.reject(requeue=True)
    assert channel.queued() == [7]
    assert channel.records() == {}
    assert channel.writes.pending() == 0


def test_closing_the_channel_restores_messages_not_yet_written(channel: Channel) -> None:
    channel.publish(1, 2)
    first, _ = channel.get(), channel.get()
    first.ack()
    channel.channel.close()  # kombu restores what is unacknowledged: after the flush
    assert channel.queued() == [2]
    assert channel.records() == {}
    assert channel.indexed() == 0


def test_an_announcement_goes_out_with_the_next_writes(channel: Channel) -> None:
    config = SimpleNamespace(broker_key_prefix=channel.broker.prefix)
    run_id = uuid.uuid4()
    with channel.broker.client.pubsub() as listener:  # type: ignore[no-untyped-call]
        listener.subscribe(finished_channel(config, run_id))  # type: ignore[arg-type]
        assert listener.get_message(timeout=HANG_GUARD_S)["type"] == "subscribe"
        announce_finished(config, channel.writes, run_id, Status.SUCCEEDED)  # type: ignore[arg-type]
        assert listener.get_message(timeout=0.2) is None  # queued, not sent
        assert channel.writes.pending() == 1
        channel.writes.flush()
        message = listener.get_message(timeout=HANG_GUARD_S)
    assert message is not None
    assert json.loads(message["data"]) == {"run_id": str(run_id), "status": "succeeded"}
    assert channel.writes.pending() == 0


def test_a_channel_of_another_transport_is_left_alone() -> None:
    with Connection("memory://") as connection:
        assert TurnWrites.install(connection.default_channel) is None


def test_a_busy_worker_leaves_no_record_behind(workers: Cluster, broker: Broker) -> None:
    config = workers.config
    greeting = job("greeting", steps=[chat("Say hello.", max_tokens=8)])
    runs = [submit_job(config, greeting, trigger="submit") for _ in range(6)]
    for submitted in runs:
        run = wait_for_run(config, submitted.run_id, timeout_s=HANG_GUARD_S)
        assert run.status == Status.SUCCEEDED, run.error or f"still {run.status} (hang guard)"
    unacked = f"{config.broker_key_prefix}unacked"
    deadline = time.monotonic() + HANG_GUARD_S  # the last acknowledgement: the next turn
    while broker.client.hlen(unacked) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert broker.client.hlen(unacked) == 0
    assert broker.client.zcard(f"{config.broker_key_prefix}unacked_index") == 0
