"""Each private name of kombu and Celery that sparkjobs uses (sparkjobs.broker.kombu_private)
still means what sparkjobs takes it to mean, in the installed kombu and Celery.

One test a name, against the real classes: kombu's own Redis channel, built without a
Redis server (conftest.py), with stand-ins where it would reach the server
(support.py). After
an upgrade, the failing test names the attribute and says what changed. The first
tests check the versions themselves.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import celery
import kombu
import kombu.transport
import pytest
from celery import Celery
from celery.beat import Scheduler
from celery.worker import state as worker_state
from celery.worker.consumer import Consumer
from kombu.transport import memory as kombu_memory
from kombu.transport import redis as kombu_redis

from sparkjobs.broker import kombu_private, transport
from sparkjobs.broker.kombu_private import (
    ALLOW_UNTESTED_ENV,
    CHANNEL_CALLED,
    CHANNEL_OVERRIDES,
    CONSUMER_OVERRIDES,
    PRIORITY_SEPARATOR,
    PRIORITY_STEPS,
    QOS_CALLED,
    QOS_REPLACED,
    TESTED_VERSIONS,
    TRANSPORT_CALLED,
    UNACKED_INDEX_KEY,
    UNACKED_KEY,
    WORKER_STATE_REQUESTS,
    UntestedVersion,
    check_versions,
)
from sparkjobs.worker.consumer import BrokerRestartConsumer
from tests.unit.broker.support import BODY, Client, Recorder, published

ROOT = Path(__file__).resolve().parents[3]
# kombu's stubs leave out most of its Redis transport.
KOMBU_CHANNEL: Any = kombu_redis.Channel
KOMBU_QOS: Any = kombu_redis.QoS
KOMBU_TRANSPORT: Any = kombu_redis.Transport


def _assert_signature(owner: Any, label: str, name: str, expected: str, user: str) -> None:
    """`owner` still has the method `name`, taking the parameters `expected` lists."""
    actual = getattr(owner, name, None)
    assert actual is not None, f"{label} has no {name} any more; {user}"
    signature = str(inspect.signature(actual))
    assert signature == expected, (
        f"{label}.{name} is now {name}{signature}, not {name}{expected}; {user}"
    )


# --- versions ----------------------------------------------------------------------


def test_the_tested_versions_are_the_ones_requirements_lock_pins() -> None:
    lock = (ROOT / "requirements.lock").read_text()
    pinned = dict(re.findall(r"^(kombu|celery)==(\S+)", lock, re.M))
    assert pinned == dict(TESTED_VERSIONS)


def test_the_installed_kombu_and_celery_are_of_the_tested_series() -> None:
    check_versions(environ={})


@pytest.mark.parametrize("module", [kombu, celery], ids=["kombu", "celery"])
def test_a_patch_release_of_the_tested_series_is_accepted(
    monkeypatch: pytest.MonkeyPatch, module: Any
) -> None:
    major, minor = kombu_private.series(TESTED_VERSIONS[module.__name__]) or (0, 0)
    monkeypatch.setattr(module, "__version__", f"{major}.{minor}.99")
    check_versions(environ={})


@pytest.mark.parametrize("module", [kombu, celery], ids=["kombu", "celery"])
def test_another_release_series_is_refused_naming_both_versions_and_the_fix(
    monkeypatch: pytest.MonkeyPatch, module: Any
) -> None:
    name, tested = module.__name__, TESTED_VERSIONS[module.__name__]
    monkeypatch.setattr(module, "__version__", "5.8.1")
    with pytest.raises(UntestedVersion) as refused:
        check_versions(environ={})
    message = str(refused.value)
    assert isinstance(refused.value, ImportError)
    assert f"tested with {name} {tested}" in message
    assert f"{name} 5.8.1 is installed" in message
    assert f"install {name}=={tested}" in message
    assert f"{ALLOW_UNTESTED_ENV}=1" in message
    assert "tests/unit/broker/test_kombu_private.py" in message


def test_an_untested_series_is_only_logged_when_allowed(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(kombu, "__version__", "6.0.0")
    with caplog.at_level(logging.WARNING, logger=kombu_private.__name__):
        check_versions(environ={ALLOW_UNTESTED_ENV: "1"})
    assert "kombu 6.0.0 is installed" in caplog.text


def test_importing_it_with_another_kombu_series_fails() -> None:
    code = "import kombu; kombu.__version__ = '5.8.1'; import sparkjobs.broker.kombu_private"
    environ = {k: v for k, v in os.environ.items() if k != ALLOW_UNTESTED_ENV}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=environ, check=False)  # fmt: skip
    assert result.returncode != 0
    assert "UntestedVersion" in result.stderr
    assert "kombu 5.8.1 is installed" in result.stderr


# --- kombu's Redis keys --------------------------------------------------------------


def test_kombu_separates_priority_sub_queues_with_priority_separator() -> None:
    assert KOMBU_CHANNEL.sep == PRIORITY_SEPARATOR, f"kombu's Channel.sep is {KOMBU_CHANNEL.sep!r}"


def test_kombu_priority_steps_are_priority_steps() -> None:
    assert tuple(kombu_redis.PRIORITY_STEPS) == PRIORITY_STEPS
    assert tuple(KOMBU_CHANNEL.priority_steps) == PRIORITY_STEPS


@pytest.mark.parametrize("priority", range(10))
def test_kombu_names_a_priority_sub_queue_with_q_for_pri_as_priority_queue_does(
    channel: Any, priority: int
) -> None:
    step = max(step for step in PRIORITY_STEPS if step <= priority)
    expected = kombu_private.priority_queue("spark1", step)
    assert kombu_private.queue_key(channel, "spark1", priority) == expected


@pytest.mark.parametrize(
    ("attribute", "key"),
    [("unacked_key", UNACKED_KEY), ("unacked_index_key", UNACKED_INDEX_KEY)],
    ids=["unacked_key", "unacked_index_key"],
)
def test_kombu_redis_qos_keeps_its_records_under_the_unacked_keys(
    channel: Any, attribute: str, key: str
) -> None:
    assert getattr(KOMBU_CHANNEL, attribute, None) == key, f"kombu's Channel.{attribute}"
    assert getattr(channel.qos, attribute, None) == key, f"kombu's QoS.{attribute}"
    assert key in kombu_private.unacked_keys(channel.qos)


def test_only_kombu_redis_qos_counts_as_one_with_records(channel: Any) -> None:
    assert kombu_private.is_redis_qos(channel.qos)
    assert not kombu_private.is_redis_qos(kombu.transport.virtual.QoS(channel))


def test_kombu_stores_a_message_in_redis_as_stored_message_reads_it(channel: Any) -> None:
    key, raw = published(channel, priority=6)
    assert key == kombu_private.priority_queue("spark1", 6)
    headers, body = kombu_private.stored_message(raw)
    assert headers["task"] == "sparkjobs.step"
    assert json.loads(body) == json.loads(BODY)


def test_kombu_records_a_delivered_message_with_raw_as_unacked_record_does(
    channel: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    message = channel.Message(json.loads(published(channel)[1]), channel=channel)
    pipe = Recorder()
    monkeypatch.setattr(channel.qos, "pipe_or_acquire", lambda *_, **__: nullcontext(pipe))
    channel.qos.append(message, message.delivery_tag)
    channel.qos.ack(message.delivery_tag)  # nothing left to restore at the channel's close
    record = kombu_private.unacked_record(message)
    assert ("hset", UNACKED_KEY, message.delivery_tag, record) in pipe.commands
    assert kombu_private.unacked_payload(record) == message._raw


def test_kombu_restores_a_record_unacked_record_wrote_to_its_queue(
    channel: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    message = channel.Message(json.loads(published(channel, priority=3)[1]), channel=channel)
    pipe, record = Recorder(), kombu_private.unacked_record(message)
    pipe.hget = lambda key, tag: record.encode()

    class Transactions:
        def transaction(self, run: Any, *watched: str) -> None:
            assert watched == (UNACKED_KEY,)
            run(pipe)

    monkeypatch.setattr(channel, "conn_or_acquire", lambda *_: nullcontext(Transactions()))
    kombu_private.restore_unacked(channel, message.delivery_tag)
    [(_, key, payload)] = [c for c in pipe.commands if c[0] in ("lpush", "rpush")]
    assert key == kombu_private.priority_queue("spark1", 3)
    assert json.loads(payload)["body"] == message._raw["body"]
    assert ("hdel", UNACKED_KEY, message.delivery_tag) in pipe.commands


# --- kombu's Redis channel -------------------------------------------------------------


@pytest.mark.parametrize(("name", "expected"), CHANNEL_OVERRIDES.items(),
                         ids=list(CHANNEL_OVERRIDES))  # fmt: skip
def test_kombu_channel_still_has_the_method_sparkjobs_overrides(name: str, expected: str) -> None:
    _assert_signature(KOMBU_CHANNEL, "kombu's Redis Channel", name, expected,
                      "sparkjobs.broker.transport.Channel overrides it")  # fmt: skip


def test_sparkjobs_channel_overrides_exactly_the_listed_methods() -> None:
    overridden = {name for name, value in vars(transport.Channel).items()
                  if callable(value) and hasattr(KOMBU_CHANNEL, name)}  # fmt: skip
    assert overridden == set(CHANNEL_OVERRIDES)


def test_kombu_polls_with_brpop_start_and_reads_with_brpop_read(channel: Any) -> None:
    assert channel.handlers["BRPOP"] == channel._brpop_read
    assert "._brpop_start(" in inspect.getsource(kombu_redis.MultiChannelPoller)


def test_kombu_builds_its_plain_clients_with_create_client(
    channel: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[dict[str, Any]] = []
    monkeypatch.setattr(channel, "_create_client", lambda **kw: built.append(kw) or Client())
    with channel.conn_or_acquire():
        pass
    assert built == [{}]


@pytest.mark.parametrize(
    ("name", "expected", "owner"),
    [*((n, s, KOMBU_CHANNEL) for n, s in CHANNEL_CALLED.items()),
     *((n, s, kombu.transport.virtual.Transport) for n, s in TRANSPORT_CALLED.items())],
    ids=[*CHANNEL_CALLED, *TRANSPORT_CALLED],
)  # fmt: skip
def test_kombu_still_has_the_method_sparkjobs_calls(name: str, expected: str, owner: Any) -> None:
    _assert_signature(owner, f"kombu's {owner.__module__}.{owner.__name__}", name, expected,
                      "sparkjobs.broker.transport calls it")  # fmt: skip


def test_kombu_cycles_the_queues_it_polls_in_queue_cycle(channel: Any) -> None:
    assert kombu_private.poll_queues(channel) == ["spark1", "spark2"]
    kombu_private.rotate_queues(channel, "spark1")
    assert kombu_private.poll_queues(channel) == ["spark2", "spark1"]


def test_kombu_marks_the_poll_in_flight_in_in_poll(channel: Any) -> None:
    channel.client = client = Client()
    KOMBU_CHANNEL._brpop_start(channel, 1)
    assert channel._in_poll is client.connection
    kombu_private.poll_done(channel)
    assert channel._in_poll is None


def test_kombu_times_the_poll_in_brpop_sent_at(channel: Any) -> None:
    channel.client = Client()
    before = time.monotonic()
    KOMBU_CHANNEL._brpop_start(channel, 1)
    kombu_sent_at = channel._brpop_sent_at
    kombu_private.poll_sent(channel, channel.client.connection)
    assert before <= kombu_sent_at <= channel._brpop_sent_at <= time.monotonic()


def test_kombu_ends_a_poll_with_flush_brpop_reauth(
    channel: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    flushed: list[bool] = []
    monkeypatch.setattr(channel, "_flush_brpop_reauth", lambda: flushed.append(True))
    channel.client = client = Client()
    kombu_private.poll_sent(channel, client.connection)
    with pytest.raises(kombu_redis.Empty):  # the stand-in's reply: nothing popped
        KOMBU_CHANNEL._brpop_read(channel)
    assert (channel._in_poll, flushed) == (None, [True])


def test_kombu_hands_a_popped_message_to_its_consumer_through_deliver(channel: Any) -> None:
    got: list[Any] = []
    channel.basic_consume("spark3", True, got.append, "tag-spark3")
    kombu_private.deliver(channel, json.loads(published(channel)[1]), "spark3")
    assert [message.headers["task"] for message in got] == ["sparkjobs.step"]


def test_kombu_resolves_a_name_again_once_forget_transport_dropped_it_from_transport_cache(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name, aliases = "sparkjobs-test", kombu.transport.TRANSPORT_ALIASES
    monkeypatch.setitem(aliases, name, "kombu.transport.memory:Transport")
    try:
        assert kombu.transport.get_transport_cls(name) is kombu_memory.Transport
        aliases[name] = "kombu.transport.redis:Transport"
        assert kombu.transport.get_transport_cls(name) is kombu_memory.Transport  # cached
        kombu_private.forget_transport(name)
        assert kombu.transport.get_transport_cls(name) is kombu_redis.Transport
    finally:
        kombu_private.forget_transport(name)


def test_kombu_connection_keeps_its_opened_default_channel_in_default_channel(
    connection: Any,
) -> None:
    assert kombu_private.opened_default_channel(connection) is None
    opened = connection.default_channel
    assert kombu_private.opened_default_channel(connection) is opened


# --- kombu's Redis QoS ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"), [*QOS_REPLACED.items(), *QOS_CALLED.items()],
    ids=[*QOS_REPLACED, *QOS_CALLED],
)  # fmt: skip
def test_kombu_redis_qos_still_has_the_method_sparkjobs_replaces_or_calls(
    name: str, expected: str
) -> None:
    _assert_signature(KOMBU_QOS, "kombu's Redis QoS", name, expected,
                      "sparkjobs.worker.turn_writes and the reconciler use it")  # fmt: skip


# --- Celery -------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "expected"), CONSUMER_OVERRIDES.items(),
                         ids=list(CONSUMER_OVERRIDES))  # fmt: skip
def test_celery_consumer_still_has_the_method_sparkjobs_overrides(name: str, expected: str) -> None:
    _assert_signature(Consumer, "Celery's Consumer", name, expected,
                      "sparkjobs.worker.consumer overrides it")  # fmt: skip


def test_sparkjobs_consumer_overrides_exactly_the_listed_methods() -> None:
    overridden = {name for name, value in vars(BrokerRestartConsumer).items()
                  if callable(value) and hasattr(Consumer, name)}  # fmt: skip
    assert overridden == set(CONSUMER_OVERRIDES)


class Request:
    """Stands in for a Celery request (weakly referenced by some of the worker state)."""


@pytest.mark.parametrize("name", WORKER_STATE_REQUESTS)
def test_celery_worker_state_holds_a_worker_s_requests_in(name: str) -> None:
    held: Any = getattr(worker_state, name, None)
    assert held is not None, f"celery.worker.state.{name} is gone: the heartbeat reads it"
    request = Request()
    if isinstance(held, Mapping):
        held["sparkjobs-test"] = request
    else:
        held.add(request)
    try:
        assert request in kombu_private.worker_requests()
    finally:
        held.pop("sparkjobs-test") if isinstance(held, Mapping) else held.discard(request)


def test_celery_beat_rebuilds_its_heap_once_forget_schedule_heap_dropped_it() -> None:
    scheduler: Any = Scheduler(Celery(set_as_current=False), lazy=True)
    scheduler.tick()
    heap = scheduler._heap
    assert heap == [], "Celery's Scheduler keeps no _heap any more"
    scheduler.tick()
    assert scheduler._heap is heap  # kept while the schedule is unchanged
    kombu_private.forget_schedule_heap(scheduler)
    scheduler.tick()
    assert scheduler._heap == []
    assert scheduler._heap is not heap
