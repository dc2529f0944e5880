"""A two-node cluster on this machine for tests: a config file and real processes.

The config mirrors the built-in default (spark1: gemma, qwen; spark2: orpheus,
clone) on free ports, so tests never collide with each other or a running `up`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sparkjobs.broker.app import create_app
from sparkjobs.config import Config, load_config
from tests.support.services import Broker, free_ports


def cluster_toml(**top: str) -> str:
    """The test cluster's TOML: the default layout, every port free, `top` keys first."""
    names = ("gemma", "qwen", "orpheus", "backend", "clone", "a1", "a2", "flower", "web")
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    lines = [f"{key} = {json.dumps(value)}" for key, value in top.items()]
    lines.append(f"""
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
max_in_flight = 8
default = true

[services.qwen]
node = "spark1"
kind = "ollama"
url = "http://127.0.0.1:{ports["qwen"]}"
models = ["qwen2.5:32b"]

[services.orpheus]
node = "spark2"
kind = "orpheus"
url = "http://127.0.0.1:{ports["orpheus"]}"
backend_url = "http://127.0.0.1:{ports["backend"]}"
voices = ["tara", "leah", "jess", "leo", "dan", "mia", "zac", "zoe"]

[services.clone]
node = "spark2"
kind = "qwen-clone"
url = "http://127.0.0.1:{ports["clone"]}"
voices = ["default"]

[worker]
shutdown_grace_s = 2.0
mingle = false  # tests start many workers; none of them needs revoked-task sync

[flower]
port = {ports["flower"]}

[web]
port = {ports["web"]}
""")
    return "\n".join(lines)


@dataclass
class Cluster:
    """A config file, the environment that selects it, and the processes started."""

    path: Path
    env: dict[str, str]
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: dict[int, Path] = field(default_factory=dict)  # pid -> its output

    @property
    def config(self) -> Config:
        return load_config(self.path)

    def sparkjobs(self, *args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
        """Run a `sparkjobs` command to completion in this cluster's environment."""
        return subprocess.run(
            [sys.executable, "-m", "sparkjobs", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )

    def start(self, *args: str, log: Path | None = None) -> subprocess.Popen[bytes]:
        """Start a long-running `sparkjobs` command; stopped by pid at teardown.

        Its output goes to `log`, by default a file beside the config, so that a
        process that exits early can say why (`output`).
        """
        log = log or self.path.parent / f"{args[0]}-{len(self.processes)}.log"
        out = log.open("ab")
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "sparkjobs", *args],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            out.close()  # the child holds its own copy
        self.processes.append(process)
        self.logs[process.pid] = log
        return process

    def output(self, process: subprocess.Popen[bytes], tail_chars: int = 3000) -> str:
        """The end of what a started process wrote."""
        text = self.logs[process.pid].read_text(errors="replace")
        return text[-tail_chars:]

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def cluster(broker: Broker, database_url: str, tmp_path: Path) -> Iterator[Cluster]:
    """The test cluster on this leg's Redis and database (migrated), its own data dir."""
    from sparkjobs.store.schema import upgrade

    upgrade(database_url)
    data_dir = Path(tempfile.mkdtemp(prefix="sjd-"))  # short: it holds unix sockets
    path = tmp_path / "sparkjobs.toml"
    path.write_text(
        cluster_toml(
            broker_url=broker.url,
            broker_key_prefix=broker.prefix,
            database_url=database_url,
            data_dir=str(data_dir),
        )
    )
    cluster = Cluster(path=path, env=clean_env(SPARKJOBS_CONFIG=str(path)))
    yield cluster
    cluster.stop_all()
    shutil.rmtree(data_dir, ignore_errors=True)


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any SPARKJOBS_ setting, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPARKJOBS_")}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


def wait_for_workers(cluster: Cluster, nodes: list[str], timeout_s: float = 60) -> None:
    """Wait until the workers of `nodes` answer a ping; fail with the output of one that exited."""
    app = create_app(cluster.config)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        replies = app.control.ping(timeout=1.0)
        online = {name.split("@")[0] for reply in replies for name in reply}
        if set(nodes) <= online:
            return
        for process in cluster.processes:
            if process.poll() is not None:
                pytest.fail(
                    f"a worker exited during start-up (exit {process.returncode}); "
                    f"its output ends:\n{cluster.output(process)}"
                )
    pytest.fail(f"workers {nodes} did not come online in {timeout_s} s")


def start_workers(cluster: Cluster, nodes: tuple[str, ...] = ("spark1", "spark2")) -> None:
    """Start a worker for each of `nodes` and wait until all of them answer."""
    for node in nodes:
        cluster.start("worker", "--node", node)
    wait_for_workers(cluster, list(nodes))
