"""The worker's Celery consumer, made to survive a restart of Redis.

When the broker connection drops, Celery 5.7 first detaches the transport
(`Connection.collect`) and then closes the connection; closing the channel makes
kombu's Redis QoS restore the channel's unacknowledged messages, which needs the
transport it no longer has. The AttributeError escapes as an "Unrecoverable error"
and the worker exits: every worker, at every Redis restart, whenever it held a
message. Closing the channel first, while the transport is still attached, makes
the later close a no-op. Messages it could not restore (Redis is down) stay in
Redis' unacknowledged set, where the reconciler restores those no live worker holds.
"""

from __future__ import annotations

import logging

from celery.worker.consumer import Consumer

log = logging.getLogger(__name__)


class BrokerRestartConsumer(Consumer):
    """Celery's consumer, closing its channel safely when the broker connection is lost."""

    def on_connection_error_after_connected(self, exc: Exception) -> None:
        connection = self.connection
        channel = getattr(connection, "_default_channel", None) if connection else None
        if channel is not None:
            try:
                channel.close()
            except Exception as error:  # Redis is down: nothing could be restored now
                log.info("broker lost: unacknowledged messages stay in Redis (%r)", error)
        super().on_connection_error_after_connected(exc)
