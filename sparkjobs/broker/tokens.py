"""Streamed tokens of a chat step: small ephemeral events over a Redis stream.

The worker appends each piece of the reply to a stream under the broker's key
prefix while the step runs, then an end marker; the caller that submitted with
`stream_tokens` reads the stream from its start, so nothing published before it
began reading is lost. The stream expires on its own. The reply itself still
lands in SQL: these events are for people watching, never the result.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from sparkjobs.broker.client import key, redis_client

if TYPE_CHECKING:
    import redis

    from sparkjobs.config import Config

STREAM_TTL_S = 600
MAX_EVENTS = 100_000
READ_BLOCK_MS = 200


def stream_key(config: Config, run_id: uuid.UUID, index: int) -> str:
    """The Redis stream of step `index`'s tokens."""
    return key(config, "tokens", str(run_id), str(index))


class TokenPublisher:
    """Appends a chat step's pieces to its stream (worker side); `close()` ends it.

    Publishing is best effort: a Redis error loses a piece for the watcher, never
    the step, whose reply is recorded in SQL from the model server's answer.
    """

    def __init__(self, config: Config, run_id: uuid.UUID, index: int) -> None:
        self._key = stream_key(config, run_id, index)
        self._client: redis.Redis = redis_client(config, timeout_s=2.0)
        self._failed = False

    def publish(self, text: str) -> None:
        if text:
            self._add({"t": text})

    def close(self, error: str | None = None) -> None:
        """Write the end marker (with the error, if the step failed), then disconnect."""
        self._add({"end": error or ""})
        with contextlib.suppress(Exception):  # best effort, see the class docstring
            self._client.expire(self._key, STREAM_TTL_S)
        self._client.close()

    def _add(self, fields: dict[str, str]) -> None:
        if self._failed:
            return
        try:
            self._client.xadd(self._key, fields, maxlen=MAX_EVENTS, approximate=True)  # type: ignore[arg-type]
        except Exception:  # best effort, see the class docstring
            self._failed = True


def follow_tokens(
    config: Config,
    run_id: uuid.UUID,
    index: int = 0,
    *,
    finished: Callable[[], bool],
    idle_check_s: float = 1.0,
) -> Iterator[str]:
    """The pieces of step `index`'s reply as the worker publishes them.

    Stops at the end marker, or when `finished()` (asked at most every
    `idle_check_s` while no event arrives) says the run is over: a step that never
    streams (it failed before its first token, or was cancelled) cannot hang this.

    Raises:
        Unreachable: the broker did not answer.
    """
    client = redis_client(config, timeout_s=(READ_BLOCK_MS / 1000) + 5.0)
    name = stream_key(config, run_id, index)
    last = "0-0"
    checked = time.monotonic()
    try:
        while True:
            answer: Any = client.xread({name: last}, block=READ_BLOCK_MS, count=256)
            for _, events in answer or []:
                for event_id, fields in events:
                    last = event_id
                    if b"end" in fields:
                        return
                    yield fields[b"t"].decode()
            now = time.monotonic()
            if not answer and now - checked >= idle_check_s:
                checked = now
                if finished():
                    return
    finally:
        client.close()
