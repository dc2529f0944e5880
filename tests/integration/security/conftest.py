"""A cluster whose every secret is set and known: a Redis that asks for a password,
a database password in the URL (PostgreSQL leg), the artifact and run-page tokens and
Flower's basic auth. Tests grep every output for them."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
import time
import tomllib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import tomli_w
from sqlalchemy import make_url

from sparkjobs.up.redis_server import find_redis_server, redis_server_argv
from tests.support.cluster import Cluster, clean_env, cluster_toml
from tests.support.services import free_port, free_ports
from tests.support.tables import merge

REDIS_PASSWORD = "redis-pw-7Qm2xV9c"
DB_PASSWORD = "db-pw-4Hs8kL1z"
WEB_TOKEN = "web-token-9Fd3nB6w"
ARTIFACT_TOKEN = "artifact-token-2Jx5pT8r"
FLOWER_USER, FLOWER_PASSWORD = "ops", "flower-pw-6Wc1qZ4e"
SECRETS = (REDIS_PASSWORD, DB_PASSWORD, WEB_TOKEN, ARTIFACT_TOKEN, FLOWER_PASSWORD)
START_TIMEOUT_S = 60.0  # a hang guard, not a speed claim


@dataclass(frozen=True)
class LockedRedis:
    """A private redis-server on loopback TCP that refuses clients without its password."""

    port: int

    def url(self, password: str | None = REDIS_PASSWORD) -> str:
        auth = f":{password}@" if password is not None else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url())


@pytest.fixture(scope="session")
def locked_redis() -> Iterator[LockedRedis]:
    home = Path(tempfile.mkdtemp(prefix="sjl-"))
    port = free_port()
    argv = redis_server_argv(find_redis_server(), port=port, data_dir=home, appendonly=False)
    process = subprocess.Popen(
        [*argv, "--requirepass", REDIS_PASSWORD],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    locked = LockedRedis(port)
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            locked.client().ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise
            time.sleep(0.05)
    yield locked
    process.terminate()
    process.wait(timeout=10)
    shutil.rmtree(home, ignore_errors=True)


def with_password(database_url: str) -> str:
    """The database URL with DB_PASSWORD in it (PostgreSQL; SQLite has no password).

    The test server trusts loopback, so the password is carried everywhere and
    checked nowhere: what the tests look at is where it shows.
    """
    url = make_url(database_url)
    if url.drivername.startswith("sqlite"):
        return database_url
    return url.set(password=DB_PASSWORD).render_as_string(hide_password=False)


JOB_FILE = """
from sparkjobs.jobs.define import chat, every, job, speak

job("briefing", schedule=every(hours=24), description="a briefing, read aloud",
    steps=[chat("Write one sentence about the weather."), speak("{previous}", voice="tara")])
"""


@dataclass
class Secured:
    """The cluster, the Redis key prefix it owns, and how to reach its listeners."""

    cluster: Cluster
    redis: LockedRedis
    prefix: str
    logs: Path

    @property
    def config(self) -> Any:
        return self.cluster.config

    def web(self) -> httpx.Client:
        config = self.config
        return httpx.Client(
            base_url=f"http://127.0.0.1:{config.web.port}",
            headers={"Authorization": f"Bearer {WEB_TOKEN}"},
            timeout=10,
        )

    def flower(self) -> httpx.Client:
        pair = base64.b64encode(f"{FLOWER_USER}:{FLOWER_PASSWORD}".encode()).decode()
        return httpx.Client(
            base_url=f"http://127.0.0.1:{self.config.flower.port}",
            headers={"Authorization": f"Basic {pair}"},
            timeout=10,
        )

    def start(self, name: str, *args: str) -> None:
        self.cluster.start(*args, log=self.logs / f"{name}.log")


@pytest.fixture
def secured(locked_redis: LockedRedis, database_url: str, tmp_path: Path) -> Iterator[Secured]:
    """The test cluster with every secret set, on the locked Redis and this leg's database."""
    from sparkjobs.store.schema import upgrade

    upgrade(database_url)
    data_dir = Path(tempfile.mkdtemp(prefix="sjs-"))
    schedules = tmp_path / "schedules"
    schedules.mkdir()
    (schedules / "briefing.py").write_text(JOB_FILE)
    prefix = f"sjtest-{uuid.uuid4().hex[:10]}:"
    text = cluster_toml(
        broker_url=locked_redis.url(),
        broker_key_prefix=prefix,
        database_url=with_password(database_url),
        data_dir=str(data_dir),
        schedules_dir=str(schedules),
    )
    document = tomllib.loads(text)
    # The config's own ports were free when it was written, and so released: a port
    # picked now could be one of them, which `config check` rightly refuses.
    metrics = free_ports(2)
    while any(f":{port}" in text for port in metrics):
        metrics = free_ports(2)
    merge(
        document,
        {
            "nodes": {
                "spark1": {"metrics_port": metrics[0]},
                "spark2": {"metrics_port": metrics[1]},
            },
            "web": {"token": WEB_TOKEN},
            "flower": {"basic_auth": [f"{FLOWER_USER}:{FLOWER_PASSWORD}"]},
            "artifacts": {"token": ARTIFACT_TOKEN},
            "tasks": {"max_retry_delay_s": 1},
        },
    )
    path = tmp_path / "sparkjobs.toml"
    path.write_text(tomli_w.dumps(document))
    logs = tmp_path / "logs"
    logs.mkdir()
    cluster = Cluster(path=path, env=clean_env(SPARKJOBS_CONFIG=str(path)))
    yield Secured(cluster, locked_redis, prefix, logs)
    cluster.stop_all()
    client = locked_redis.client()
    for key in client.scan_iter(match=f"{prefix}*", count=500):
        client.delete(key)
    client.close()
    shutil.rmtree(data_dir, ignore_errors=True)


def wait_for(what: str, check: Any, cluster: Cluster) -> Any:
    """Poll `check` until it returns something truthy (a hang guard bounds it)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            found = check()
        except (httpx.HTTPError, redis.RedisError, json.JSONDecodeError, OSError):
            found = None
        if found:
            return found
        for process in cluster.processes:
            assert process.poll() is None, f"a process exited while waiting for {what}"
        time.sleep(0.2)
    pytest.fail(f"{what} did not happen in {START_TIMEOUT_S} s (hang guard)")
