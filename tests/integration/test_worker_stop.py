"""Graceful stop and rejoin: SIGTERM lets a short task finish, an idle worker exits at
once, and a restarted worker consumes again.

(A task longer than the grace period is handed back to the queue: see
test_worker_ping.py's test_a_stopped_worker_hands_its_running_task_back_to_the_queue.)
"""

from __future__ import annotations

import signal
import time

import pytest

from sparkjobs.broker.app import create_app
from sparkjobs.broker.client import queue_keys
from sparkjobs.broker.kombu_private import UNACKED_KEY as UNACKED
from sparkjobs.broker.ping import await_pong, ping_node, send_ping
from tests.support.cluster import Cluster, wait_for_workers

pytestmark = pytest.mark.redis

HANG_GUARD_S = 60


def test_a_task_shorter_than_the_grace_period_finishes_before_the_worker_exits(
    cluster: Cluster,
) -> None:
    cluster.env["SPARKJOBS_WORKER__SHUTDOWN_GRACE_S"] = "5"
    worker = cluster.start("worker", "--node", "spark1")
    wait_for_workers(cluster, ["spark1"])
    app = create_app(cluster.config)
    reply_to = send_ping(app, "spark1", hold_s=1.0)
    deadline = time.monotonic() + HANG_GUARD_S
    while not any((app.control.inspect(timeout=1.0).active() or {}).values()):
        assert time.monotonic() < deadline, "the held ping never started"
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=HANG_GUARD_S) == 0
    # The answer was written before the worker exited: the task finished, not handed back.
    assert await_pong(app, reply_to, "spark1", timeout_s=1).node == "spark1"
    # And it was acknowledged before the exit: nothing to deliver again.
    prefix = cluster.config.broker_key_prefix
    assert sum(app.redis.llen(name) for name in queue_keys(prefix, "spark1")) == 0
    assert app.redis.hlen(f"{prefix}{UNACKED}") == 0


def test_an_idle_worker_exits_at_once_not_after_its_grace_period(cluster: Cluster) -> None:
    cluster.env["SPARKJOBS_WORKER__SHUTDOWN_GRACE_S"] = str(HANG_GUARD_S * 2)
    worker = cluster.start("worker", "--node", "spark1")
    wait_for_workers(cluster, ["spark1"])
    assert ping_node(create_app(cluster.config), "spark1", timeout_s=HANG_GUARD_S)
    worker.send_signal(signal.SIGTERM)
    # Nothing runs, so nothing is waited for: it exits long before its 120 s grace.
    assert worker.wait(timeout=HANG_GUARD_S) == 0


def test_a_restarted_worker_consumes_its_queue_again(cluster: Cluster) -> None:
    first = cluster.start("worker", "--node", "spark2")
    wait_for_workers(cluster, ["spark2"])
    first.send_signal(signal.SIGTERM)
    first.wait(timeout=HANG_GUARD_S)
    app = create_app(cluster.config)
    reply_to = send_ping(app, "spark2")  # queued while no worker runs
    cluster.start("worker", "--node", "spark2")
    assert await_pong(app, reply_to, "spark2", timeout_s=HANG_GUARD_S).queue == "spark2"
    assert ping_node(app, "spark2", timeout_s=HANG_GUARD_S).node == "spark2"
