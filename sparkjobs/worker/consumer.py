"""The worker's Celery consumer, made to survive a restart of Redis, and lighter per message.

When the broker connection drops, Celery 5.7 first detaches the transport
(`Connection.collect`) and then closes the connection; closing the channel makes
kombu's Redis QoS restore the channel's unacknowledged messages, which needs the
transport it no longer has. The AttributeError escapes as an "Unrecoverable error"
and the worker exits: every worker, at every Redis restart, whenever it held a
message. Closing the channel first, while the transport is still attached, makes
the later close a no-op. Messages it could not restore (Redis is down) stay in
Redis' unacknowledged set, where the reconciler restores those no live worker holds.

The record of unacknowledged messages, and the announcements of runs' ends, are
written once per loop turn (sparkjobs.worker.turn_writes), over the one client the channel
keeps for its commands (sparkjobs.broker.transport).
"""

from __future__ import annotations

import logging
from typing import Any

from celery.worker.consumer import Consumer

from sparkjobs.broker.app import SparkjobsApp
from sparkjobs.broker.kombu_private import opened_default_channel
from sparkjobs.worker.turn_writes import TurnWrites

log = logging.getLogger(__name__)


class BrokerRestartConsumer(Consumer):
    """Celery's consumer, closing its channel safely when the broker connection is lost.
    With an event loop, the record of delivered messages and the announcements of runs'
    ends are written once per turn of the loop (`TurnWrites`). Its overrides of Celery's
    methods are listed in kombu_private.CONSUMER_OVERRIDES."""

    hub: Any  # Celery's event loop (kombu's Hub), or None without one
    writes: TurnWrites | None = None

    def connect(self) -> Any:
        connection = super().connect()
        channel = connection.default_channel
        if self.hub is not None:  # without a loop (no turns), kombu writes as it goes
            self.writes = TurnWrites.install(channel)
            if isinstance(self.app, SparkjobsApp):  # where the tasks announce runs' ends
                self.app.turn_writes = self.writes
            self.hub.on_tick.add(self._write)
        return connection

    def _write(self) -> None:
        if self.writes is not None:
            self.writes.flush()

    def on_connection_error_after_connected(self, exc: Exception) -> None:
        connection = self.connection
        channel = opened_default_channel(connection) if connection else None
        if channel is not None:
            try:
                channel.close()
            except Exception as error:  # Redis is down: nothing could be restored now
                log.info("broker lost: unacknowledged messages stay in Redis (%r)", error)
        super().on_connection_error_after_connected(exc)
