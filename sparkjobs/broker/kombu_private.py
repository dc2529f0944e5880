"""Every private name of kombu and Celery that sparkjobs relies on, in one place.

sparkjobs reaches past the public API of kombu and Celery where that API has no way
in: its Redis channel overrides kombu's poll to take several messages a round trip
(sparkjobs.broker.transport), its worker writes kombu's records of unacknowledged
messages itself, once a loop turn (sparkjobs.worker.turn_writes), its reconciler reads
those records and kombu's priority sub-queues straight from Redis, its heartbeat reads
Celery's worker state, and its beat rebuilds Celery's schedule heap. None of these
names is documented, and any release may rename or reshape them. So each one is
spelled here and nowhere else, as a constant or a small accessor, and
tests/unit/broker/test_kombu_private.py exercises each against the installed kombu
and Celery, one test a name: after an upgrade, the test that fails says which name
changed, and how.

Importing this module compares the installed kombu and Celery with `TESTED_VERSIONS`
(the pins of requirements.lock). Another release of the same minor series (5.7.x) is
accepted: patch releases fix bugs without reshaping internals, and refusing them would
keep a security fix from a user. A release of another series raises `UntestedVersion`
(an ImportError) naming both versions and the way out. With the environment variable
SPARKJOBS_ALLOW_UNTESTED_VERSIONS=1 the refusal is only logged, which is how to run
the test above against a new release before moving the pins.

Names of kombu's and Celery's classes that sparkjobs subclasses and overrides are
listed here too (`CHANNEL_OVERRIDES`, `QOS_REPLACED`, `CONSUMER_OVERRIDES`), with the
signature kombu or Celery gives them: the subclass still has to define each method by
its name, and the test checks that kombu or Celery still calls it that way.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import time
from collections.abc import Mapping
from typing import Any

import celery
import kombu

log = logging.getLogger(__name__)

# --- versions --------------------------------------------------------------------

# The versions these names were checked against: requirements.lock pins them (a test
# keeps the two in step). Any release of the same major.minor is accepted.
TESTED_VERSIONS: Mapping[str, str] = {"kombu": "5.7.0", "celery": "5.7.0"}
# Set to 1 to log an untested version instead of refusing it (to test a new release).
ALLOW_UNTESTED_ENV = "SPARKJOBS_ALLOW_UNTESTED_VERSIONS"


class UntestedVersion(ImportError):
    """kombu or Celery is of a release series whose private names were never checked."""


def installed_versions() -> dict[str, str]:
    """The versions of kombu and Celery this process imported."""
    kombu_version = kombu.__version__  # type: ignore[attr-defined]  # not in kombu's stubs
    return {"kombu": str(kombu_version), "celery": celery.__version__}


def series(version: str) -> tuple[int, int] | None:
    """A version's (major, minor), e.g. (5, 7) for "5.7.0rc1"; None if unreadable."""
    found = re.match(r"(\d+)\.(\d+)", version)
    return (int(found[1]), int(found[2])) if found else None


def check_versions(environ: Mapping[str, str] = os.environ) -> None:
    """Refuse a kombu or Celery outside the tested minor series.

    Raises:
        UntestedVersion: naming the installed and the tested version, and the fix;
            only logged when `ALLOW_UNTESTED_ENV` is set to 1.
    """
    installed = installed_versions()
    for name, tested in TESTED_VERSIONS.items():
        version = installed[name]
        if version == tested or series(version) == series(tested):
            continue
        major, minor = series(tested) or (0, 0)
        message = (
            f"sparkjobs was tested with {name} {tested} (and accepts {major}.{minor}.x); "
            f"{name} {version} is installed. sparkjobs relies on private names of {name} "
            "(sparkjobs.broker.kombu_private) that another release may have changed: "
            f"install {name}=={tested}, as requirements.lock pins it, or, to try {name} "
            f"{version}, set {ALLOW_UNTESTED_ENV}=1 and run "
            "`pytest tests/unit/broker/test_kombu_private.py`, whose failures say what changed"
        )
        if environ.get(ALLOW_UNTESTED_ENV) == "1":
            log.warning("%s (allowed by %s=1)", message, ALLOW_UNTESTED_ENV)
            continue
        raise UntestedVersion(message)


# --- kombu's Redis keys ------------------------------------------------------------

# kombu's Redis priority sub-queues (queue_order_strategy "priority"): priority 0 is
# the queue itself, the others are the queue's name, this separator (`Channel.sep`)
# and the step (`kombu.transport.redis.PRIORITY_STEPS`), highest priority first.
PRIORITY_SEPARATOR = "\x06\x16"
PRIORITY_STEPS = (0, 3, 6, 9)

# Where kombu's Redis QoS records delivered, unacknowledged messages (under the global
# key prefix): a hash of records by delivery tag, and a sorted set of the tags by
# delivery time. The defaults of the channel's `unacked_key` and `unacked_index_key`,
# which the QoS reads through the attributes of the same names.
UNACKED_KEY = "unacked"
UNACKED_INDEX_KEY = "unacked_index"
UNACKED_KEY_ATTRS = ("unacked_key", "unacked_index_key")


def priority_queue(queue: str, step: int) -> str:
    """The Redis list of `queue` that holds the messages of priority `step`."""
    return f"{queue}{PRIORITY_SEPARATOR}{step}" if step else queue


def unacked_record(message: Any) -> str:
    """kombu's record of an unacknowledged message: its payload as it came from Redis
    (`Message._raw`), its exchange and its routing key, as JSON (kombu's `QoS.append`)."""
    from kombu.utils.json import dumps

    delivery = message.delivery_info
    return str(dumps([message._raw, delivery["exchange"], delivery["routing_key"]]))


def unacked_payload(record: bytes | str) -> Any:
    """The message payload of a record `unacked_record` wrote.

    Raises:
        ValueError, IndexError, TypeError: not such a record.
    """
    return json.loads(record)[0]


def stored_message(raw: bytes | str) -> tuple[Mapping[str, Any], bytes | str]:
    """The headers and the body of a message as kombu's Redis transport stores it in a
    queue: JSON, its body base64-encoded (the channel's `body_encoding`).

    Raises:
        ValueError, KeyError, TypeError: not such a message.
    """
    message = json.loads(raw)
    headers = message.get("headers") or {}
    body: bytes | str = message["body"]
    if (message.get("properties") or {}).get("body_encoding") == "base64":
        body = base64.b64decode(body)
    return headers, body


# --- kombu's Redis channel (kombu.transport.redis.Channel) ---------------------------

# The methods sparkjobs.broker.transport.Channel overrides, with kombu's signatures:
# its overrides take the same parameters and pass them on to kombu's.
CHANNEL_OVERRIDES: Mapping[str, str] = {
    "_brpop_start": "(self, timeout=None)",
    "_brpop_read": "(self, **options)",
    "_create_client": "(self, asynchronous=False)",
}
# The methods of kombu's channel (and of its transport) that the overrides call.
CHANNEL_CALLED: Mapping[str, str] = {
    "_q_for_pri": "(self, queue, pri)",
    "_flush_brpop_reauth": "(self)",
}
TRANSPORT_CALLED: Mapping[str, str] = {"_deliver": "(self, message, queue)"}


def poll_queues(channel: Any) -> list[str]:
    """The queues the next poll asks, in the order of kombu's queue cycle
    (`Channel._queue_cycle`)."""
    return list(channel._queue_cycle.consume(len(channel.active_queues)))


def rotate_queues(channel: Any, queue: str) -> None:
    """Move `queue` behind the others in kombu's queue cycle (`Channel._queue_cycle`),
    as a message taken from it does."""
    channel._queue_cycle.rotate(queue)


def queue_key(channel: Any, queue: str, priority: int) -> str:
    """The Redis list (without the key prefix) of `queue` for messages of `priority`
    (`Channel._q_for_pri`)."""
    return str(channel._q_for_pri(queue, priority))


def poll_sent(channel: Any, connection: Any) -> None:
    """Record a poll sent on `connection`, as kombu's `_brpop_start` does: kombu's loop
    reads the connection it waits on (`Channel._in_poll`), its watchdog the time the
    poll was sent (`Channel._brpop_sent_at`)."""
    channel._in_poll = connection
    channel._brpop_sent_at = time.monotonic()


def poll_done(channel: Any) -> None:
    """Record the poll's reply read, as kombu's `_brpop_read` does at its end: no poll in
    flight (`Channel._in_poll`), then a pending re-authentication sent now that the
    connection is idle (`Channel._flush_brpop_reauth`)."""
    channel._in_poll = None
    channel._flush_brpop_reauth()


def deliver(channel: Any, payload: Any, queue: str) -> None:
    """Hand a message taken from `queue` to its consumer, as kombu's poll does (the
    transport's `_deliver`)."""
    channel.connection._deliver(payload, queue)


# --- kombu's Redis QoS (kombu.transport.redis.QoS) --------------------------------

# The methods sparkjobs.worker.turn_writes replaces on a channel's QoS, with kombu's
# signatures (the replacements take the same parameters).
QOS_REPLACED: Mapping[str, str] = {
    "append": "(self, message, delivery_tag)",
    "ack": "(self, delivery_tag)",
    "reject": "(self, delivery_tag, requeue=False)",
    "restore_unacked_once": "(self, stderr=None)",
}
# The methods of kombu's QoS that sparkjobs calls.
QOS_CALLED: Mapping[str, str] = {
    "restore_by_tag": "(self, tag, client=None, leftmost=False)",
    "can_consume_max_estimate": "(self)",
}


def is_redis_qos(qos: Any) -> bool:
    """Whether `qos` is kombu's Redis QoS, with its records of unacknowledged messages."""
    return all(hasattr(qos, name) for name in UNACKED_KEY_ATTRS)


def unacked_keys(qos: Any) -> tuple[str, str]:
    """The keys (without the prefix) of `qos`'s records and of its index of them."""
    return str(qos.unacked_key), str(qos.unacked_index_key)


def restore_unacked(channel: Any, tag: str) -> None:
    """Put the message recorded unacknowledged under `tag` back in its queue, the next to
    be taken, and erase the record (kombu's `QoS.restore_by_tag`, in one transaction)."""
    channel.qos.restore_by_tag(tag)


# --- kombu's connection and transport registry -------------------------------------


def opened_default_channel(connection: Any) -> Any:
    """A kombu connection's default channel if it was opened, else None
    (`Connection._default_channel`: reading `default_channel` would open one)."""
    return getattr(connection, "_default_channel", None)


def forget_transport(name: str) -> None:
    """Make kombu resolve the transport `name` again from `TRANSPORT_ALIASES`: it caches
    the class of each name it resolved (`kombu.transport._transport_cache`)."""
    from kombu import transport

    transport._transport_cache.pop(name, None)  # type: ignore[attr-defined]


# --- Celery ------------------------------------------------------------------------

# The methods sparkjobs.worker.consumer.BrokerRestartConsumer overrides on Celery's
# consumer (celery.worker.consumer.Consumer), with Celery's signatures.
CONSUMER_OVERRIDES: Mapping[str, str] = {
    "connect": "(self)",
    "on_connection_error_after_connected": "(self, exc)",
}
# The globals of celery.worker.state that hold the requests a worker process holds:
# reserved or running, and waiting out a countdown (Celery >= 5.6).
WORKER_STATE_REQUESTS = ("requests", "scheduled_requests")


def worker_requests() -> list[Any]:
    """The task requests this worker process holds (`WORKER_STATE_REQUESTS`).

    Raises:
        RuntimeError: the consumer thread changed them while they were read.
    """
    from celery.worker import state

    scheduled = getattr(state, "scheduled_requests", ())
    return [*state.requests.values(), *scheduled]


def forget_schedule_heap(scheduler: Any) -> None:
    """Make a Celery beat scheduler rebuild its heap (`Scheduler._heap`) from `schedule`
    at its next tick."""
    scheduler._heap = None


check_versions()
