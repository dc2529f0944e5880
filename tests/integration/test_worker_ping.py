"""Real worker processes, one per node, answering through a real Redis in both legs."""

from __future__ import annotations

import json
import signal
import time
import uuid
from pathlib import Path

import pytest

from sparkjobs.broker.app import create_app
from sparkjobs.broker.client import key
from sparkjobs.broker.ping import ping_node, send_ping
from sparkjobs.errors import UnknownNode
from tests.support.cluster import Cluster, wait_for_workers
from tests.support.services import Broker

pytestmark = pytest.mark.redis


def test_each_node_answers_ping_from_its_own_queue(cluster: Cluster) -> None:
    for node in ("spark1", "spark2"):
        cluster.start("worker", "--node", node)
    wait_for_workers(cluster, ["spark1", "spark2"])
    app = create_app(cluster.config)
    for node in ("spark1", "spark2"):
        pong = ping_node(app, node, timeout_s=30)
        assert pong.node == node
        assert pong.queue == node
        assert pong.worker.startswith(f"{node}@")


def test_ping_command_reports_every_node(cluster: Cluster) -> None:
    for node in ("spark1", "spark2"):
        cluster.start("worker", "--node", node)
    wait_for_workers(cluster, ["spark1", "spark2"])
    result = cluster.sparkjobs("ping", "--json")
    assert result.returncode == 0, result.stderr
    answers = json.loads(result.stdout)
    assert [(a["node"], a["ok"], a["queue"]) for a in answers] == [
        ("spark1", True, "spark1"),
        ("spark2", True, "spark2"),
    ]


def test_a_node_without_a_worker_is_reported_down_with_exit_1(cluster: Cluster) -> None:
    cluster.start("worker", "--node", "spark1")
    wait_for_workers(cluster, ["spark1"])
    result = cluster.sparkjobs("ping", "--timeout", "2")
    assert result.returncode == 1
    assert "spark2" in result.stdout
    assert "sparkjobs worker --node spark2" in result.stdout


def test_unknown_node_is_refused_and_nothing_is_queued(cluster: Cluster, broker: Broker) -> None:
    app = create_app(cluster.config)
    with pytest.raises(UnknownNode):
        ping_node(app, "spark3", timeout_s=1)
    result = cluster.sparkjobs("ping", "--node", "spark3")
    assert result.returncode == 2
    assert "unknown node 'spark3'" in result.stderr
    assert list(broker.client.scan_iter(match=f"{broker.prefix}*")) == []


def test_worker_refuses_a_pickle_message_and_runs_the_json_one_after_it(
    cluster: Cluster, broker: Broker
) -> None:
    cluster.start("worker", "--node", "spark1")
    wait_for_workers(cluster, ["spark1"])
    config = cluster.config
    app = create_app(config)
    pickled = key(config, "ping", uuid.uuid4().hex)
    app.send_task(
        "sparkjobs.ping", kwargs={"node": "spark1", "reply_to": pickled}, serializer="pickle"
    )
    # The worker takes one message at a time, in order: once the JSON ping sent
    # after it has been answered, the pickle message has been dealt with.
    ping_node(app, "spark1", timeout_s=30)
    assert broker.client.llen(pickled) == 0


def test_worker_for_an_unknown_node_exits_2(cluster: Cluster) -> None:
    result = cluster.sparkjobs("worker", "--node", "spark7")
    assert result.returncode == 2
    assert "unknown node 'spark7'; known: spark1, spark2" in result.stderr


def test_cli_exits_3_naming_an_unreachable_broker(tmp_path: object) -> None:
    from tests.support.cluster import clean_env, cluster_toml
    from tests.support.services import free_port

    port = free_port()  # nothing listens there
    path = tmp_path / "c.toml"  # type: ignore[operator]
    path.write_text(cluster_toml(broker_url=f"redis://:sekrit@127.0.0.1:{port}/0"))
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "sparkjobs", "--config", str(path), "ping"],
        env=clean_env(), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 3
    assert f"broker redis://:***@127.0.0.1:{port}/0 is unreachable" in result.stderr
    assert "sekrit" not in result.stderr


def test_a_stopped_worker_hands_its_running_task_back_to_the_queue(
    cluster: Cluster, tmp_path: Path
) -> None:
    log = tmp_path / "worker.log"
    first = cluster.start("worker", "--node", "spark1", log=log)
    wait_for_workers(cluster, ["spark1"])
    app = create_app(cluster.config)
    reply_to = send_ping(app, "spark1", hold_s=600)
    deadline = time.monotonic() + 60
    while not any((app.control.inspect(timeout=1.0).active() or {}).values()):
        assert time.monotonic() < deadline, "the held ping never started"
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=60) is not None  # stops within its grace, not after 600 s
    stopping = log.read_text()
    assert "1 running task(s) get up to" in stopping
    assert "Traceback" not in stopping  # a clean stop: no CRITICAL "Unrecoverable error"
    assert "CRITICAL" not in stopping
    assert app.redis.llen(reply_to) == 0  # it was not answered ...
    cluster.start("worker", "--node", "spark1")
    # ... and the restarted worker runs it again: the message was handed back.
    # (It holds for 600 s again, so ask the new worker what it is running.)
    deadline = time.monotonic() + 60
    while True:
        active = app.control.inspect(timeout=1.0).active() or {}
        running = [t for tasks in active.values() for t in tasks]
        if running:
            break
        assert time.monotonic() < deadline, "the handed-back ping was not redelivered"
    assert running[0]["kwargs"]["reply_to"] == reply_to


def test_each_worker_serves_its_node_artifacts(cluster: Cluster) -> None:
    import httpx

    for node in ("spark1", "spark2"):
        cluster.start("worker", "--node", node)
    wait_for_workers(cluster, ["spark1", "spark2"])
    config = cluster.config
    for node in ("spark1", "spark2"):
        url = f"http://127.0.0.1:{config.artifacts_port(node)}/v1/health"
        assert httpx.get(url, timeout=10).status_code == 200


@pytest.mark.parametrize(("loglevel", "logged"), [("INFO", False), ("DEBUG", True)])
def test_celerys_per_task_lines_are_logged_only_at_debug(
    cluster: Cluster, tmp_path: object, loglevel: str, logged: bool
) -> None:
    log = tmp_path / "worker.log"  # type: ignore[operator]
    cluster.start("worker", "--node", "spark1", "--loglevel", loglevel, log=log)
    wait_for_workers(cluster, ["spark1"])
    pong = ping_node(create_app(cluster.config), "spark1", timeout_s=30)
    assert pong.node == "spark1"
    deadline = time.monotonic() + 10  # the "succeeded" line follows the reply
    while logged and "succeeded in" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    text = log.read_text()
    assert "ready." in text  # the worker's own INFO lines are there either way
    assert ("Task sparkjobs.ping[" in text and "succeeded in" in text) is logged
