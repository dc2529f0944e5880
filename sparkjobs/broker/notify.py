"""Telling waiters that a run finished (or that a piece of its speech is recorded): a
Redis message after the commit, and a watch.

The process that makes a run terminal (the worker that finishes or fails its last
step, `cancel`) publishes on the run's channel once its transaction has committed.
A waiter subscribes before it first reads SQL, so a run that finishes in between is
either seen in SQL or announced to it. Pub/sub is at most once and only reaches those
listening: a lost message costs a waiter one safety poll, never a hang, and a broker
that does not answer turns the watch into a plain sleep.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any, Protocol

from sparkjobs.broker.client import key, redis_client

if TYPE_CHECKING:
    from types import TracebackType

    import redis

    from sparkjobs.config import Config
    from sparkjobs.store.models import Status

log = logging.getLogger(__name__)

# Subscribing is confirmed within this time or the watch falls back to polling.
SUBSCRIBE_TIMEOUT_S = 2.0


class Publisher(Protocol):
    """What can announce: a redis-py client, or a worker's turn writes."""

    def publish(self, channel: str, message: str) -> Any: ...


def finished_channel(config: Config, run_id: uuid.UUID) -> str:
    """The pub/sub channel on which run `run_id`'s end is announced."""
    return key(config, "run", str(run_id), "finished")


def announce_finished(
    config: Config, client: Publisher | None, run_id: uuid.UUID, status: Status | str
) -> None:
    """Announce that run `run_id` is terminal; call only after the commit that made it so.

    Best effort: a broker error is logged, and waiters notice the run at their next
    safety poll instead.

    Args:
        config: the cluster config (for the key prefix and, without `client`, the broker).
        client: what to publish with (a worker's `app.announcer`: its loop's next
            writes, or a redis-py client); None: a short-lived client is made and closed.
        run_id: the run.
        status: its terminal status, carried in the message for people watching.
    """
    if client is None:
        own = redis_client(config, timeout_s=2.0)
        try:
            announce_finished(config, own, run_id, status)
        finally:
            own.close()
        return
    payload = json.dumps({"run_id": str(run_id), "status": str(getattr(status, "value", status))})
    try:
        client.publish(finished_channel(config, run_id), payload)
    except Exception as exc:  # best effort, see the docstring
        log.warning("could not announce the end of run %s: %s", run_id, exc)


def audio_channel(config: Config, run_id: uuid.UUID) -> str:
    """The pub/sub channel on which each piece of run `run_id`'s speech is announced."""
    return key(config, "run", str(run_id), "audio")


def announce_audio(
    config: Config, client: Publisher, run_id: uuid.UUID, index: int, piece: int
) -> None:
    """Announce that piece `piece` of step `index`'s speech is recorded (its row and its
    artifact): whoever streams the run's audio reads it now. Call after the commit;
    best effort, as `announce_finished`."""
    payload = json.dumps({"run_id": str(run_id), "index": index, "piece": piece})
    try:
        client.publish(audio_channel(config, run_id), payload)
    except Exception as exc:  # best effort: a listener's safety poll finds the piece
        log.warning("could not announce piece %d of run %s: %s", piece, run_id, exc)


class FinishWatch:
    """Waits for the announcement of one run's end (`with FinishWatch(...) as watch:`),
    and with `audio`, of each piece of its speech.

    Entering subscribes and waits for Redis to confirm it, so that every announcement
    published from then on reaches `wait`. Without a broker, `wait` just sleeps.
    """

    def __init__(self, config: Config, run_id: uuid.UUID, *, audio: bool = False) -> None:
        self.channel = finished_channel(config, run_id)
        self.channels = [self.channel, *([audio_channel(config, run_id)] if audio else [])]
        self._config = config
        self._client: redis.Redis | None = None
        self._pubsub: Any = None

    def __enter__(self) -> FinishWatch:
        try:
            self._client = redis_client(self._config, timeout_s=None, connect_timeout_s=2.0)
            self._pubsub = self._client.pubsub()  # type: ignore[no-untyped-call]  # redis-py
            self._pubsub.subscribe(*self.channels)
            if not self._confirmed():
                raise TimeoutError(f"no confirmation of SUBSCRIBE {self.channel}")
        except Exception as exc:  # no broker: the caller's polling still works
            log.debug("watching %s by polling only: %s", self.channel, exc)
            self._close()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._close()

    @property
    def subscribed(self) -> bool:
        """Whether announcements can reach this watch (False: it only sleeps)."""
        return self._pubsub is not None

    def wait(self, timeout_s: float) -> bool:
        """Sleep until the run's end is announced or `timeout_s` passes.

        Returns:
            True if an announcement arrived (read SQL now), False after the timeout.
        """
        until = time.monotonic() + max(0.0, timeout_s)
        if self._pubsub is None:
            time.sleep(max(0.0, timeout_s))
            return False
        try:
            while (left := until - time.monotonic()) > 0:
                message = self._pubsub.get_message(timeout=left)
                if message is not None and message.get("type") == "message":
                    return True
        except Exception as exc:  # the broker went away: sleep out the rest
            log.debug("watch of %s lost its broker: %s", self.channel, exc)
            self._close()
            time.sleep(max(0.0, until - time.monotonic()))
        return False

    def _confirmed(self) -> bool:
        until, confirmed = time.monotonic() + SUBSCRIBE_TIMEOUT_S, 0
        while (left := until - time.monotonic()) > 0:
            message = self._pubsub.get_message(timeout=left)
            if message is not None and message.get("type") == "subscribe":
                confirmed += 1
                if confirmed == len(self.channels):
                    return True
        return False

    def _close(self) -> None:
        pubsub, client, self._pubsub, self._client = self._pubsub, self._client, None, None
        for closing in (pubsub, client):
            if closing is not None:
                try:
                    closing.close()
                except Exception:  # closing a broken connection may fail: nothing to keep
                    log.debug("closing the watch of %s", self.channel, exc_info=True)
