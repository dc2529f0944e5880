"""A throwaway one-machine cluster for the submit benchmarks: a private redis-server on a
unix socket, a migrated SQLite store, and a config whose services are free loopback ports."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis
from _harness import free_port

from sparkjobs.up.redis_server import find_redis_server, redis_server_argv


@dataclass(frozen=True)
class BenchCluster:
    config_path: Path
    broker_url: str
    socket_path: Path
    ports: dict[str, int]


@contextmanager
def bench_cluster(home: Path) -> Iterator[BenchCluster]:
    """Start redis-server in `home`, migrate SQLite there, write the config; stop at exit."""
    from sparkjobs.store.schema import upgrade

    socket_path = home / "redis.sock"
    server = subprocess.Popen(
        redis_server_argv(find_redis_server(), socket=socket_path, data_dir=home),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis(unix_socket_path=str(socket_path))
        deadline = time.monotonic() + 30
        while True:
            try:
                client.ping()
                break
            except (redis.ConnectionError, FileNotFoundError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        client.close()
        names = ("orpheus", "backend", "gemma", "a1", "a2")
        ports = dict(zip(names, (free_port() for _ in names), strict=True))
        database = f"sqlite:///{home / 'sparkjobs.db'}"
        upgrade(database)
        broker = f"redis+socket://{socket_path}"
        path = home / "bench.toml"
        path.write_text(f"""
data_dir = "{home}"
broker_url = "{broker}"
database_url = "{database}"
[nodes.spark1]
bond_address = "127.0.0.1"
artifacts_port = {ports["a1"]}
[nodes.spark2]
bond_address = "127.0.0.1"
artifacts_port = {ports["a2"]}
[services.gemma]
node = "spark1"
kind = "openai"
url = "http://127.0.0.1:{ports["gemma"]}"
models = ["gemma-4-26b-a4b"]
[services.orpheus]
node = "spark2"
kind = "orpheus"
url = "http://127.0.0.1:{ports["orpheus"]}"
backend_url = "http://127.0.0.1:{ports["backend"]}"
voices = ["tara", "leah"]
""")
        yield BenchCluster(path, broker, socket_path, ports)
    finally:
        server.terminate()
        server.wait(timeout=10)
