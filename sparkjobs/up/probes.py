"""Quick yes/no checks that a component serves; each returns within about a second."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sparkjobs.broker.app import SparkjobsApp
    from sparkjobs.config import Config


def redis_answers(config: Config) -> bool:
    """The broker answers PING."""
    from sparkjobs.broker.client import check_broker
    from sparkjobs.errors import Unreachable

    try:
        check_broker(config, timeout_s=1.0)
    except Unreachable:
        return False
    return True


_apps: dict[int, SparkjobsApp] = {}


def _app(config: Config) -> SparkjobsApp:
    """One client app per config, reused across polls (each holds a connection)."""
    if id(config) not in _apps:
        from sparkjobs.broker.app import create_app

        _apps[id(config)] = create_app(config)
    return _apps[id(config)]


def worker_answers(config: Config, worker: str) -> bool:
    """The Celery worker `worker` answers a remote-control ping (nothing is queued)."""
    try:
        replies = _app(config).control.ping(destination=[worker], timeout=1.0)
    except OSError:
        return False
    return any(worker in reply for reply in replies or [])


def http_answers(url: str) -> bool:
    """Something answers HTTP at `url` with a status below 500."""
    import httpx

    try:
        return httpx.get(url, timeout=1.0).status_code < 500
    except httpx.HTTPError:
        return False
