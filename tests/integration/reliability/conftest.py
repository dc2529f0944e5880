"""A cluster whose workers beat and reconcile fast, so recovery shows within a test."""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from sparkjobs.up.redis_server import find_redis_server, redis_server_argv
from tests.integration.jobs.conftest import cluster_sims, workers
from tests.support.cluster import Cluster
from tests.support.services import Broker

__all__ = ["OwnRedis", "cluster_sims", "fast_reconciler", "own_broker", "own_redis", "workers"]

# Recovery in a few seconds instead of the production defaults' half minute.
FAST_RECONCILER = """
[reconciler]
heartbeat_interval_s = 0.5
heartbeat_ttl_s = 2.0
interval_s = 0.5
unclaimed_s = 2.0
"""


@pytest.fixture
def fast_reconciler(cluster: Cluster) -> Cluster:
    """The cluster's config with the fast reconciler settings (before anything starts)."""
    with cluster.path.open("a") as config:
        config.write(FAST_RECONCILER)
    return cluster


class OwnRedis:
    """A redis-server of this test alone, append-only, that the harness may kill."""

    def __init__(self) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="sjc-"))  # short: a unix socket lives here
        self.socket = self.home / "redis.sock"
        self.argv = redis_server_argv(find_redis_server(), socket=self.socket, data_dir=self.home)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis+socket://{self.socket}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        client = redis.Redis(unix_socket_path=str(self.socket))
        deadline = time.monotonic() + 30
        while True:
            try:
                client.ping()
                break
            except (redis.RedisError, FileNotFoundError, OSError):
                assert time.monotonic() < deadline, "redis-server did not start in 30 s"
                assert self.process.poll() is None, "redis-server exited at start"
                time.sleep(0.05)
        client.close()

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        shutil.rmtree(self.home, ignore_errors=True)


@pytest.fixture
def own_redis(leg: str) -> Iterator[OwnRedis]:
    """Both legs: the shared Redis must never be killed, so the test brings its own."""
    server = OwnRedis()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_broker(own_redis: OwnRedis) -> Iterator[Broker]:
    """The test's own redis-server as a broker: a module whose tests kill Redis
    overrides `broker` with this one."""
    client = redis.Redis(unix_socket_path=str(own_redis.socket))
    yield Broker(url=own_redis.url, prefix=f"sjchaos-{uuid.uuid4().hex[:6]}:", client=client)
    client.close()
