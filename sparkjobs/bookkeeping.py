"""A worker's record of unacknowledged messages, written to Redis once per loop turn.

kombu's Redis QoS records each message it delivers (a ZADD and an HSET, so that a
dead worker's messages can be restored) and erases the record at the acknowledgement
(a ZREM and an HDEL): two pipelines a message, each a round trip that the worker's
event loop waits for, and the loop is the one thread every message goes through.
`TurnBookkeeping` keeps kombu's in-memory accounting (prefetch, restore at close) as
it is and queues the Redis writes instead; the loop writes them at the start of its
next turn, before it polls again, in one pipeline of at most four commands, whatever
the number of messages received and acknowledged meanwhile. A message acknowledged
in the turn it arrived is never written at all.

What changes: a message is recorded a loop turn later (its task may have started).
A worker killed in that window leaves no record to restore, so its message is not
redelivered by kombu: sparkjobs' reconciler finds the unit unfinished in SQL and
unclaimed, and queues it again (docs/reliability.md). An acknowledgement lost the
same way leaves a record of a finished unit, which the reconciler drops. Before
anything reads the records back (a requeue, the restore at close), the queue is
written first.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from kombu.transport.virtual.base import QoS as VirtualQoS
from kombu.utils.json import dumps


class TurnBookkeeping:
    """The pending Redis writes of one kombu Redis QoS; `install` puts it in place."""

    def __init__(self, qos: Any) -> None:
        self.qos = qos
        self._lock = threading.Lock()  # acknowledgements may come from other threads
        self._records: dict[str, str] = {}
        self._erased: list[str] = []

    @classmethod
    def install(cls, channel: Any) -> TurnBookkeeping | None:
        """Queue `channel`'s bookkeeping writes; None (nothing changed) unless it is
        kombu's Redis channel."""
        qos = channel.qos
        if not all(hasattr(qos, name) for name in ("unacked_key", "unacked_index_key")):
            return None
        book = cls(qos)
        qos.append, qos.ack = book.append, book.ack
        reject, restore = qos.reject, qos.restore_unacked_once

        def reject_written(delivery_tag: str, requeue: bool = False) -> None:
            book.flush()  # a requeue reads the message back from its record
            reject(delivery_tag, requeue=requeue)

        def restore_written(*args: Any, **kwargs: Any) -> Any:
            book.flush()
            return restore(*args, **kwargs)

        qos.reject, qos.restore_unacked_once = reject_written, restore_written
        return book

    def append(self, message: Any, delivery_tag: str) -> None:
        """kombu's `QoS.append`, its Redis writes queued."""
        delivery = message.delivery_info
        record = dumps([message._raw, delivery["exchange"], delivery["routing_key"]])
        with self._lock:
            self._records[delivery_tag] = record
        VirtualQoS.append(self.qos, message, delivery_tag)

    def ack(self, delivery_tag: str) -> None:
        """kombu's `QoS.ack`, its Redis writes queued (none if never written)."""
        with self._lock:
            if self._records.pop(delivery_tag, None) is None:
                self._erased.append(delivery_tag)
        VirtualQoS.ack(self.qos, delivery_tag)

    def pending(self) -> int:
        """How many writes are queued."""
        with self._lock:
            return len(self._records) + len(self._erased)

    def flush(self) -> None:
        """Write what is queued, in one pipeline. On a Redis error the writes stay
        queued for the next try, and the error goes to the caller (the loop, which
        reconnects as for any broker error)."""
        with self._lock:
            records, erased = self._records, self._erased
            self._records, self._erased = {}, []
        if not records and not erased:
            return
        qos = self.qos
        try:
            with qos.channel.conn_or_acquire() as client:
                pipe = client.pipeline(transaction=False)
                if records:
                    now = time.time()
                    pipe.zadd(qos.unacked_index_key, dict.fromkeys(records, now))
                    pipe.hset(qos.unacked_key, mapping=records)
                if erased:
                    pipe.zrem(qos.unacked_index_key, *erased)
                    pipe.hdel(qos.unacked_key, *erased)
                pipe.execute()
        except BaseException:
            with self._lock:
                self._records = records | self._records
                self._erased = erased + self._erased
            raise
