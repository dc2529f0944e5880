"""Ping a node through the broker and wait for its worker's answer."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sparkjobs.broker.client import key
from sparkjobs.config.routing import queue_for_node
from sparkjobs.errors import SparkjobsError

if TYPE_CHECKING:
    from sparkjobs.broker.app import SparkjobsApp


class NoAnswer(SparkjobsError):
    """A node's worker did not answer in time (it may be down or busy)."""


@dataclass(frozen=True)
class Pong:
    node: str
    worker: str
    queue: str
    round_trip_ms: float


def send_ping(app: SparkjobsApp, node: str, *, hold_s: float = 0.0) -> str:
    """Queue `sparkjobs.broker.ping` for `node`; returns the Redis key its answer will land on."""
    config = app.sparkjobs_config
    queue_for_node(config, node)
    reply_to = key(config, "ping", uuid.uuid4().hex)
    app.send_task("sparkjobs.ping", kwargs={"node": node, "reply_to": reply_to, "hold_s": hold_s})
    return reply_to


def ping_node(
    app: SparkjobsApp, node: str, *, timeout_s: float = 10.0, hold_s: float = 0.0
) -> Pong:
    """Send `sparkjobs.broker.ping` to `node`'s queue and wait for the reply.

    Raises:
        UnknownNode: nothing was sent.
        NoAnswer: no worker answered within `timeout_s`.
    """
    started = time.perf_counter()
    reply_to = send_ping(app, node, hold_s=hold_s)
    return _await(app, reply_to, node, timeout_s, started)


def await_pong(app: SparkjobsApp, reply_to: str, node: str, *, timeout_s: float) -> Pong:
    """Wait for the answer to a ping sent earlier with `send_ping`."""
    return _await(app, reply_to, node, timeout_s, time.perf_counter())


def _await(app: SparkjobsApp, reply_to: str, node: str, timeout_s: float, started: float) -> Pong:
    popped = app.redis.blpop([reply_to], timeout=timeout_s)
    if popped is None:
        raise NoAnswer(
            f"no worker of node {node!r} answered within {timeout_s:g} s; "
            f"is `sparkjobs worker --node {node}` running?"
        )
    answer = json.loads(popped[1])
    return Pong(
        node=answer["node"],
        worker=answer["worker"],
        queue=answer["queue"],
        round_trip_ms=(time.perf_counter() - started) * 1000,
    )
