"""What a busy worker writes to Redis without waiting for it: one pipeline a loop turn.

kombu's Redis QoS records each message it delivers (a ZADD and an HSET, so that a
dead worker's messages can be restored) and erases the record at the acknowledgement
(a ZREM and an HDEL): two pipelined round trips a message, which the worker's event
loop waits for, and the loop is the one thread every message goes through. A run's
end is announced to its waiters with a PUBLISH, one more round trip, from the task's
thread. `TurnWrites` keeps kombu's in-memory accounting (prefetch, restore at close)
as it is and queues those writes instead: the loop sends them at the start of its
next turn, before it polls again, in one pipeline, whatever the number of messages
received and acknowledged and runs finished meanwhile. A message acknowledged in the
turn it arrived is never recorded at all.

What changes: a message is recorded a loop turn later (its task may have started).
A worker killed in that window leaves no record to restore, so its message is not
redelivered by kombu: sparkjobs' reconciler finds the unit unfinished in SQL and
unclaimed, and queues it again (docs/reliability.md). An acknowledgement lost the
same way leaves a record of a finished unit, which the reconciler drops. Before
anything reads the records back (a requeue, the restore at close), the queue is
written first. An announcement goes out after the task's thread moved on, within
the loop turn its acknowledgement causes; as before, it is best effort (waiters poll
SQL behind it).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import redis
from kombu.transport.virtual.base import QoS as VirtualQoS

from sparkjobs.broker.kombu_private import is_redis_qos, unacked_keys, unacked_record

log = logging.getLogger(__name__)


class TurnWrites:
    """The queued Redis writes of one kombu Redis channel; `install` puts it in place."""

    def __init__(self, qos: Any, client: redis.Redis, prefix: str) -> None:
        self.qos = qos
        # A plain client on kombu's own pool: the same connections and settings, and
        # keys as they are (kombu's client would prefix a PUBLISH's channel again).
        self._client = client
        records_key, index_key = unacked_keys(qos)
        self._index_key = prefix + index_key
        self._records_key = prefix + records_key
        self._lock = threading.Lock()  # tasks' threads announce; acknowledgements may too
        self._records: dict[str, str] = {}
        self._erased: list[str] = []
        self._announced: list[tuple[str, str]] = []

    @classmethod
    def install(cls, channel: Any) -> TurnWrites | None:
        """Queue `channel`'s record writes; None (nothing changed) unless it is kombu's
        Redis channel."""
        qos = channel.qos
        if not is_redis_qos(qos):
            return None
        client = redis.Redis(connection_pool=channel.pool)
        writes = cls(qos, client, getattr(channel, "global_keyprefix", "") or "")
        # kombu_private.QOS_REPLACED lists the methods replaced here, kombu's signatures.
        qos.append, qos.ack = writes.append, writes.ack
        reject, restore = qos.reject, qos.restore_unacked_once

        def reject_written(delivery_tag: str, requeue: bool = False) -> None:
            if channel.connection is None:
                # Closed after a lost broker connection, a late reject of one of its
                # messages would crash the worker (kombu reaches for the closed
                # channel's pool). Its record stays in Redis and is restored.
                log.info("reject of %s skipped: its channel closed with the broker "
                         "connection; the message is restored", delivery_tag)  # fmt: skip
                return
            writes.flush()  # a requeue reads the message back from its record
            reject(delivery_tag, requeue=requeue)

        def restore_written(*args: Any, **kwargs: Any) -> Any:
            writes.flush()
            return restore(*args, **kwargs)

        qos.reject, qos.restore_unacked_once = reject_written, restore_written
        return writes

    def append(self, message: Any, delivery_tag: str) -> None:
        """kombu's `QoS.append`, its Redis writes queued."""
        record = unacked_record(message)
        with self._lock:
            self._records[delivery_tag] = record
        VirtualQoS.append(self.qos, message, delivery_tag)

    def ack(self, delivery_tag: str) -> None:
        """kombu's `QoS.ack`, its Redis writes queued (none if never written)."""
        with self._lock:
            if self._records.pop(delivery_tag, None) is None:
                self._erased.append(delivery_tag)
        VirtualQoS.ack(self.qos, delivery_tag)

    def publish(self, channel: str, message: str) -> None:
        """A PUBLISH, sent with the loop's next writes (redis-py's signature)."""
        with self._lock:
            self._announced.append((channel, message))

    def pending(self) -> int:
        """How many writes are queued."""
        with self._lock:
            return len(self._records) + len(self._erased) + len(self._announced)

    def flush(self) -> None:
        """Send what is queued, in one pipeline. On a Redis error the record writes
        stay queued for the next try, announcements are dropped (waiters poll SQL
        behind them), and the error goes to the caller: the loop, which reconnects as
        for any broker error."""
        with self._lock:
            records, erased, announced = self._records, self._erased, self._announced
            self._records, self._erased, self._announced = {}, [], []
        if not records and not erased and not announced:
            return
        pipe = self._client.pipeline(transaction=False)
        if records:
            pipe.zadd(self._index_key, dict.fromkeys(records, time.time()))
            written: dict[Any, Any] = records  # redis-py's Mapping is invariant in its keys
            pipe.hset(self._records_key, mapping=written)
        if erased:
            pipe.zrem(self._index_key, *erased)
            pipe.hdel(self._records_key, *erased)
        for channel, message in announced:
            pipe.publish(channel, message)
        try:
            pipe.execute()
        except BaseException:
            with self._lock:
                self._records = records | self._records
                self._erased = erased + self._erased
            if announced:
                log.warning("%d run-end announcement(s) lost with Redis", len(announced))
            raise
