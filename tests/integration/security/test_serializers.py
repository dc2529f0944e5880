"""Workers take JSON only: a message in any other serializer is dropped undecoded.

Each foreign message carries a payload that, if it were decoded, would create a file
(the pickle one is proven live: loading it here does create its file). The worker
answers a JSON ping sent after them, and none of the files exists."""

from __future__ import annotations

import pickle
import time
import uuid
from pathlib import Path

import pytest
from kombu import Exchange

from sparkjobs.broker.app import create_app
from sparkjobs.broker.client import key, queue_keys
from sparkjobs.broker.ping import ping_node
from tests.support.cluster import Cluster, wait_for_workers
from tests.support.services import Broker

pytestmark = pytest.mark.redis


class CreatesAFile:
    """Unpickling this opens (so creates) a file: a stand-in for arbitrary code."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.path), "w"))


def task_headers(reply_to: str) -> dict[str, object]:
    """Celery's protocol-2 headers of a `sparkjobs.broker.ping` task."""
    task_id = str(uuid.uuid4())
    return {
        "lang": "py",
        "task": "sparkjobs.ping",
        "id": task_id,
        "root_id": task_id,
        "parent_id": None,
        "group": None,
        "argsrepr": "()",
        "kwargsrepr": repr({"reply_to": reply_to}),
        "origin": "test",
        "retries": 0,
    }


def test_messages_in_pickle_yaml_or_msgpack_are_never_decoded_by_a_worker(
    cluster: Cluster, broker: Broker, tmp_path: Path
) -> None:
    log = tmp_path / "worker.log"
    cluster.start("worker", "--node", "spark1", log=log)
    wait_for_workers(cluster, ["spark1"])
    config = cluster.config
    app = create_app(config)
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(CreatesAFile(control))).close()  # the payload is live
    assert control.exists()

    markers = {kind: tmp_path / f"made-by-{kind}" for kind in ("pickle", "yaml", "msgpack")}
    replies = {kind: key(config, "ping", uuid.uuid4().hex) for kind in markers}
    kwargs = {"node": "spark1", "reply_to": replies["pickle"], "x": CreatesAFile(markers["pickle"])}
    pickled = pickle.dumps(((), kwargs, {}), protocol=2)
    yaml_body = (
        f'- []\n- {{node: spark1, reply_to: "{replies["yaml"]}", '
        f'x: !!python/object/apply:builtins.open ["{markers["yaml"]}", "w"]}}\n- {{}}\n'
    )
    # msgpack: [[], {"node": "spark1", "reply_to": ...}, {}] (it cannot carry code; still refused)
    reply = replies["msgpack"].encode()
    msgpack_body = (
        b"\x93\x90\x82\xa4node\xa6spark1\xa8reply_to" + bytes([0xD9, len(reply)]) + reply + b"\x80"
    )
    bodies = {
        "pickle": (pickled, "application/x-python-serialize", "binary"),
        "yaml": (yaml_body.encode(), "application/x-yaml", "utf-8"),
        "msgpack": (msgpack_body, "application/x-msgpack", "binary"),
    }
    with app.producer_or_acquire() as producer:
        for kind, (body, content_type, encoding) in bodies.items():
            producer.publish(
                body,
                exchange=Exchange("spark1", type="direct"),
                routing_key="spark1",
                content_type=content_type,
                content_encoding=encoding,
                headers=task_headers(replies[kind]),
                serializer=None,
            )

    # One message at a time, in order: once this JSON ping is answered, the worker
    # has dealt with every message before it.
    assert ping_node(app, "spark1", timeout_s=30).node == "spark1"

    for kind, marker in markers.items():
        assert not marker.exists(), f"the {kind} payload was decoded"
        assert broker.client.llen(replies[kind]) == 0, f"the {kind} ping was answered"
    # Dropped, not left to come back: the queue is empty and nothing waits unacked.
    assert all(broker.client.llen(k) == 0 for k in queue_keys(config.broker_key_prefix, "spark1"))
    unacked = f"{config.broker_key_prefix}unacked"
    deadline = time.monotonic() + 30  # the JSON ping is acknowledged just after it answers
    while broker.client.hlen(unacked) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert broker.client.hgetall(unacked) == {}
    text = log.read_text()
    for content_type in (
        "application/x-python-serialize",
        "application/x-yaml",
        "application/x-msgpack",
    ):
        assert content_type in text or content_type.split("-")[-1] in text, text[-3000:]
