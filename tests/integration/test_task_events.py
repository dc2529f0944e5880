"""Task events on demand: real workers send them once a watcher asks, heartbeats always."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sparkjobs.broker.app import SparkjobsApp, create_app
from sparkjobs.broker.events import ENABLE_INTERVAL_S, ask_for_task_events, watched_key
from sparkjobs.broker.ping import ping_node
from tests.support.cluster import Cluster, wait_for_workers

pytestmark = pytest.mark.redis

HANG_GUARD_S = 60  # stops a hang; not a speed claim


class Events:
    """Every Celery event on the cluster's broker, captured in a thread."""

    def __init__(self, app: SparkjobsApp) -> None:
        self.app = app
        self.seen: list[dict[str, Any]] = []
        self.receiver: Any = None
        self.thread = threading.Thread(target=self._capture, daemon=True)

    def _capture(self) -> None:
        # One subscription for the whole test: events sent between two would be lost.
        with self.app.connection_for_read() as connection:
            self.receiver = self.app.events.Receiver(connection, handlers={"*": self.seen.append})
            for _ in self.receiver.itercapture(limit=None, timeout=None, wakeup=False):
                pass

    def stop(self) -> None:
        if self.receiver is not None:
            self.receiver.should_stop = True
        self.thread.join(timeout=5)

    def wait_for(self, what: str, match: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        deadline = time.monotonic() + HANG_GUARD_S
        while time.monotonic() < deadline:
            for event in list(self.seen):
                if match(event):
                    return event
            time.sleep(0.1)
        pytest.fail(f"no {what} in {HANG_GUARD_S} s; seen: {[e['type'] for e in self.seen]}")

    def of(self, node: str, prefix: str) -> list[dict[str, Any]]:
        return [
            e
            for e in list(self.seen)
            if e["type"].startswith(prefix) and e.get("hostname", "").startswith(f"{node}@")
        ]


@pytest.fixture
def events(cluster: Cluster) -> Iterator[Events]:
    captured = Events(create_app(cluster.config, role="daemon"))
    captured.thread.start()
    yield captured
    captured.stop()


def test_task_events_start_off_switch_on_when_asked_and_heartbeats_never_stop(
    cluster: Cluster, events: Events
) -> None:
    app = create_app(cluster.config)
    cluster.start("worker", "--node", "spark1")
    wait_for_workers(cluster, ["spark1"])
    ping_node(app, "spark1", timeout_s=30)
    # A heartbeat sent after the ping ran: worker events flow with task events off.
    after = time.time()
    events.wait_for(
        "heartbeat of spark1",
        lambda e: e["type"] == "worker-heartbeat" and e["timestamp"] > after + 0.5,
    )
    assert events.of("spark1", "task-") == []

    # Asked once (the key, then the broadcast): the running worker switches on.
    ask_for_task_events(app)
    deadline = time.monotonic() + HANG_GUARD_S
    while not events.of("spark1", "task-succeeded") and time.monotonic() < deadline:
        ping_node(app, "spark1", timeout_s=30)
        time.sleep(0.2)
    kinds = {e["type"] for e in events.of("spark1", "task-")}
    assert {"task-received", "task-started", "task-succeeded"} <= kinds

    # A worker started while someone watches reads the key and sends from its first
    # task on, without a broadcast (the key is kept long enough for a slow start).
    app.redis.set(watched_key(app), "1", ex=600)
    cluster.start("worker", "--node", "spark2")
    wait_for_workers(cluster, ["spark2"])
    ping_node(app, "spark2", timeout_s=30)
    events.wait_for(
        "spark2's first task-succeeded",
        lambda e: e["type"] == "task-succeeded" and e["hostname"].startswith("spark2@"),
    )


def test_task_events_switch_off_once_no_watcher_renews_the_key(
    cluster: Cluster, events: Events, tmp_path: Path
) -> None:
    app = create_app(cluster.config)
    log = tmp_path / "worker.log"
    cluster.start("worker", "--node", "spark1", log=log)
    wait_for_workers(cluster, ["spark1"])
    ask_for_task_events(app)
    deadline = time.monotonic() + HANG_GUARD_S
    while not events.of("spark1", "task-succeeded") and time.monotonic() < deadline:
        ping_node(app, "spark1", timeout_s=30)
        time.sleep(0.2)
    assert events.of("spark1", "task-succeeded")

    time.sleep(1.5 * ENABLE_INTERVAL_S)  # a watcher stays a while: the worker looks once
    app.redis.delete(watched_key(app))  # as if the last watcher stopped and its key expired
    deadline = time.monotonic() + HANG_GUARD_S
    while "task events off" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "task events off" in log.read_text()
    sent = len(events.of("spark1", "task-"))
    ping_node(app, "spark1", timeout_s=30)
    after = time.time()
    events.wait_for(  # the stream is live: a heartbeat sent after the ping came through
        "heartbeat of spark1",
        lambda e: e["type"] == "worker-heartbeat" and e["timestamp"] > after + 0.5,
    )
    assert len(events.of("spark1", "task-")) == sent

    # Switched on by hand (no key): they stay on past the worker's next looks.
    app.control.enable_events()
    deadline = time.monotonic() + HANG_GUARD_S
    while len(events.of("spark1", "task-")) == sent and time.monotonic() < deadline:
        ping_node(app, "spark1", timeout_s=30)
        time.sleep(0.2)
    time.sleep(2 * ENABLE_INTERVAL_S)  # two looks at the key: nothing to notice
    succeeded = len(events.of("spark1", "task-succeeded"))
    ping_node(app, "spark1", timeout_s=30)
    events.wait_for(
        "a task-succeeded after the looks",
        lambda _: len(events.of("spark1", "task-succeeded")) > succeeded,
    )
