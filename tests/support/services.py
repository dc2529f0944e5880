"""Redis for tests: a private redis-server per session (embedded leg) or the shared one.

The shared Redis is never flushed: every test gets its own key prefix, and its
keys are deleted one by one afterwards.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from sparkjobs.up.redis_server import find_redis_server, redis_server_argv

SHARED_REDIS = "redis://127.0.0.1:6379/0"


def require(service: str, where: str, error: Exception | None) -> None:
    """Fail under CI=true, skip elsewhere, when a service the test needs is missing."""
    if error is None:
        return
    message = f"{service} not reachable at {where}: {error}"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message} (CI must provide it)")
    pytest.skip(message)


@dataclass(frozen=True)
class Broker:
    """A Redis for one test: its URL, the key prefix the test owns, and a client."""

    url: str
    prefix: str
    client: redis.Redis


def free_port() -> int:
    return free_ports(1)[0]


# Ports for the tests' servers come from below the kernel's ephemeral range: a port
# that bind(0) handed out and that was closed again is where the next outgoing
# connection of any process (a Redis client, an HTTP call) may get its local port
# before the server it was meant for binds it. Each test process takes its own slice
# of this range, in turn, so that two parallel tests never pick the same port.
TEST_PORTS = (20000, 32000)
_port_turn = itertools.count()


def _port_slice() -> tuple[int, int]:
    """This test process' ports: the range split evenly among the xdist workers."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    index = int(worker) if worker.isdigit() else 0
    workers = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    size = (TEST_PORTS[1] - TEST_PORTS[0]) // workers
    low = TEST_PORTS[0] + (index % workers) * size
    return low, low + size


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports from this process' slice, never handed out twice in a
    row (the slice is walked in turn, skipping ports something listens on)."""
    low, high = _port_slice()
    found: list[int] = []
    for _ in range(high - low):
        port = low + next(_port_turn) % (high - low)
        if _bindable(port):
            found.append(port)
            if len(found) == count:
                return found
    raise RuntimeError(f"no {count} free ports between {low} and {high}")


@pytest.fixture(scope="session")
def private_redis() -> Iterator[str]:
    """A redis-server of our own on a unix socket, append-only, as `up` runs it."""
    with running_redis(find_redis_server()) as url:
        yield url


@contextmanager
def running_redis(binary: Path) -> Iterator[str]:
    """`binary` run as a redis-server on a unix socket until the block ends; its URL."""
    home = Path(tempfile.mkdtemp(prefix="sjr-"))  # short: socket paths stop at 107 bytes
    socket_path = home / "redis.sock"
    process = subprocess.Popen(
        redis_server_argv(binary, socket=socket_path, data_dir=home),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(unix_socket_path=str(socket_path))
    deadline = time.monotonic() + 30
    while True:
        try:
            client.ping()
            break
        except (redis.ConnectionError, FileNotFoundError):
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise
            time.sleep(0.05)
    try:
        yield f"redis+socket://{socket_path}"
    finally:
        client.close()
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def shared_redis_reachable() -> Exception | None:
    try:
        redis.Redis.from_url(SHARED_REDIS, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        return exc
    return None


@pytest.fixture
def broker(request: pytest.FixtureRequest, leg: str) -> Iterator[Broker]:
    """The Redis of this leg, with a key prefix that belongs to this test alone."""
    if leg == "embedded":
        url = request.getfixturevalue("private_redis")
    else:
        require("Redis", SHARED_REDIS, request.getfixturevalue("shared_redis_reachable"))
        url = SHARED_REDIS
    prefix = f"sjtest-{uuid.uuid4().hex[:10]}:"
    from sparkjobs.broker.client import redis_py_url

    client = redis.Redis.from_url(redis_py_url(url))
    yield Broker(url=url, prefix=prefix, client=client)
    for key in client.scan_iter(match=f"{prefix}*", count=500):
        client.delete(key)
    client.close()
