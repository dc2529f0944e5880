"""The Redis behind Celery: URLs, a plain client for sparkjobs' own keys, reachability.

Celery owns the queues; sparkjobs keeps small ephemeral state beside them (ping
replies now; leases, health and the scheduler lock later), always under the
configured key prefix so that one Redis can serve several clusters or test runs.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from sparkjobs.broker.kombu_private import PRIORITY_STEPS, priority_queue
from sparkjobs.config.render import mask_url
from sparkjobs.errors import Unreachable

if TYPE_CHECKING:
    import redis

    from sparkjobs.config import Config

log = logging.getLogger(__name__)


def redis_py_url(broker_url: str) -> str:
    """kombu's URL spelled for redis-py (redis+socket:///path becomes unix:///path)."""
    parts = urlsplit(broker_url)
    if parts.scheme == "redis+socket":
        return f"unix://{parts.path}" + (f"?{parts.query}" if parts.query else "")
    return broker_url


def queue_keys(prefix: str, queue: str) -> list[str]:
    """The Redis lists that hold `queue`'s messages, highest priority first (kombu's
    priority sub-queues)."""
    return [prefix + priority_queue(queue, step) for step in PRIORITY_STEPS]


def describe(broker_url: str) -> str:
    """Where the broker is, for messages: the URL without its password."""
    return mask_url(broker_url)


def redis_client(
    config: Config, *, timeout_s: float | None = 5.0, connect_timeout_s: float | None = None
) -> redis.Redis:
    """A redis-py client for the configured broker.

    Args:
        timeout_s: for each command (None for clients that block on BLPOP).
        connect_timeout_s: for connecting; default `timeout_s`.
    """
    import redis as redis_lib

    return redis_lib.Redis.from_url(
        redis_py_url(config.broker),
        socket_connect_timeout=connect_timeout_s or timeout_s,
        socket_timeout=timeout_s,
        health_check_interval=30,
    )


def key(config: Config, *parts: str) -> str:
    """A sparkjobs key in Redis, under the configured prefix."""
    return config.broker_key_prefix + ":".join(("sparkjobs", *parts))


def check_broker(config: Config, *, timeout_s: float = 2.0) -> None:
    """Raise Unreachable (exit 3), naming the broker, unless it answers PING."""
    import redis as redis_lib

    client = redis_client(config, timeout_s=timeout_s)
    try:
        client.ping()
    except redis_lib.AuthenticationError as exc:
        if urlsplit(config.broker).password is None:
            raise Unreachable(
                f"broker {describe(config.broker)} asks for a password and broker_url has "
                "none; write it into broker_url as redis://:PASSWORD@HOST:PORT/DB"
            ) from exc
        raise Unreachable(
            f"broker {describe(config.broker)} refused the password: {exc}; "
            "fix the password in broker_url"
        ) from exc
    except (redis_lib.ConnectionError, redis_lib.TimeoutError, OSError) as exc:
        hint = (
            "is `sparkjobs up` running?"
            if config.uses_embedded_broker
            else "is Redis running there, and reachable from this host?"
        )
        raise Unreachable(
            f"broker {describe(config.broker)} is unreachable ({exc}); {hint}"
        ) from exc
    finally:
        client.close()


def refuse_a_wrong_broker_password(config: Config) -> None:
    """Raise Unreachable (exit 3) at once when the broker refuses the password.

    Retrying cannot fix a wrong password, so a daemon says so and stops instead of
    logging the refusal forever; a broker that is down is waited for as usual.
    """
    import redis as redis_lib

    try:
        check_broker(config)
    except Unreachable as exc:
        if isinstance(exc.__cause__, redis_lib.AuthenticationError):
            raise
        log.info("the broker does not answer yet: %s", exc)
