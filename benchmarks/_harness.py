"""Shared set-up of the benchmarks: a throwaway cluster on this machine.

`bench_cluster` (the dispatch benchmarks): Redis and PostgreSQL are the development
services (127.0.0.1:6379, :5432, database `test`); each run uses its own Redis key
prefix and its own PostgreSQL schema, both removed afterwards. Simulators and workers
run as child processes, stopped by pid. `embedded_cluster` (the submit benchmarks): a
private redis-server on a unix socket, a migrated SQLite store, and a config whose
services are free loopback ports. Not a benchmark itself: run as a script it does nothing.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import redis

from sparkjobs.up.redis_server import find_redis_server, redis_server_argv

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get(
    "BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


_handed_out: set[int] = set()


def free_port() -> int:
    """A loopback port nothing listens on, never the same twice in one process: the
    kernel may hand a port closed again to the next bind(0), and a config with one
    port for two listeners is refused."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A database URL whose connections see only a fresh schema (dropped afterwards)."""
    from sqlalchemy import create_engine, make_url, text

    schema = f"sjbench_{secrets.token_hex(5)}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        admin.dispose()


@dataclass
class Bench:
    """A config file for one node `n1`, and the child processes started with it."""

    home: Path
    prefix: str
    database_url: str
    services: dict[str, dict[str, object]]
    extra: str = ""
    children: list[subprocess.Popen[str]] = field(default_factory=list)

    @property
    def config_path(self) -> Path:
        return self.home / "bench.toml"

    def write(self) -> Path:
        lines = [
            f"data_dir = {json.dumps(str(self.home))}",
            f"broker_url = {json.dumps(REDIS_URL)}",
            f"broker_key_prefix = {json.dumps(self.prefix)}",
            f"database_url = {json.dumps(self.database_url)}",
            f"schedules_dir = {json.dumps(str(self.home / 'schedules'))}",
            "[nodes.n1]",
            'bond_address = "127.0.0.1"',
            f"artifacts_port = {free_port()}",
        ]
        for name, spec in self.services.items():
            lines.append(f"[services.{name}]")
            lines.extend(f"{k} = {json.dumps(v)}" for k, v in spec.items())
        self.config_path.write_text("\n".join(lines) + "\n" + self.extra)
        return self.config_path

    def start(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        """Start `python -m sparkjobs --config ... ARGS` (output to a log in home)."""
        log = (self.home / f"{args[0]}-{len(self.children)}.log").open("w")
        process = subprocess.Popen(
            [sys.executable, "-m", "sparkjobs", "--config", str(self.config_path), *args],
            stdout=log, stderr=subprocess.STDOUT, text=True, start_new_session=True,
            env={**os.environ, **(env or {})},
        )  # fmt: skip
        log.close()
        self.children.append(process)
        return process

    def stop(self) -> None:
        for process in self.children:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.children:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_listening(port: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"nothing listens on port {port} after {timeout_s} s")


def wait_worker(app: object, node: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        replies = app.control.ping(timeout=1.0)  # type: ignore[attr-defined]
        if any(name.startswith(f"{node}@") for reply in replies for name in reply):
            return
    raise SystemExit(f"the worker of {node} did not come online in {timeout_s} s")


def delete_keys(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        client.delete(key)
    client.close()


@contextmanager
def bench_cluster(services: dict[str, dict[str, object]], extra: str = "") -> Iterator[Bench]:
    """A migrated PostgreSQL schema, a Redis prefix and a config file; cleaned after."""
    import tempfile

    from sparkjobs.store.schema import upgrade

    with tempfile.TemporaryDirectory(prefix="sjb-") as home, postgres_schema() as url:
        upgrade(url)
        bench = Bench(Path(home), f"sjbench-{secrets.token_hex(5)}:", url, services, extra)
        (bench.home / "schedules").mkdir()
        bench.write()
        try:
            yield bench
        finally:
            bench.stop()
            delete_keys(bench.prefix)


def terminal_runs(database_url: str, run_ids: list[object]) -> int:
    """How many of `run_ids` have finished (any final status)."""
    from sqlalchemy import func, select

    from sparkjobs.execution.context import sessions_for
    from sparkjobs.store.models import TERMINAL, Run

    with sessions_for(database_url)() as session:
        return int(
            session.scalar(
                select(func.count()).where(Run.id.in_(run_ids), Run.status.in_(TERMINAL))
            )
            or 0
        )


def wait_runs(database_url: str, run_ids: list[object], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while terminal_runs(database_url, run_ids) < len(run_ids):
        if time.monotonic() > deadline:
            raise SystemExit(f"runs not finished after {timeout_s} s")
        time.sleep(0.05)


if __name__ == "__main__":
    print("benchmarks/_harness.py is the benchmarks' shared set-up, not a benchmark")


@dataclass(frozen=True)
class EmbeddedCluster:
    """A private redis-server on a unix socket, a migrated SQLite store, and a config."""

    config_path: Path
    broker_url: str
    socket_path: Path
    ports: dict[str, int]


@contextmanager
def embedded_cluster(home: Path) -> Iterator[EmbeddedCluster]:
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
        yield EmbeddedCluster(path, broker, socket_path, ports)
    finally:
        server.terminate()
        server.wait(timeout=10)
