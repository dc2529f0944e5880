"""`sparkjobs up` as a person runs it: ready, a ping through every node, stop, nothing left."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sparkjobs.up.run import READY_LINE
from tests.support.cluster import clean_env, cluster_toml
from tests.support.procs import alive, descendants
from tests.support.services import Broker

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

READY_TIMEOUT_S = 180  # a hang guard, not a speed claim


@pytest.fixture
def up_env(broker: Broker, database_url: str, leg: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    """A config for `up`: its own Redis and SQLite (embedded leg), or the shared
    Redis and a PostgreSQL schema migrated beforehand, as an operator would."""
    data_dir = Path(tempfile.mkdtemp(prefix="sju-"))
    top = {"data_dir": str(data_dir)}
    if leg == "services":
        from sparkjobs.store.schema import upgrade

        upgrade(database_url)
        top |= {
            "broker_url": broker.url,
            "broker_key_prefix": broker.prefix,
            "database_url": database_url,
        }
    path = tmp_path / "sparkjobs.toml"
    path.write_text(cluster_toml(**top))
    yield clean_env(SPARKJOBS_CONFIG=str(path))
    shutil.rmtree(data_dir, ignore_errors=True)


def sparkjobs(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sparkjobs", *args],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def wait_for_line(log: Path, needle: str, process: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace") if log.exists() else ""
        if needle in text:
            return text
        if process.poll() is not None:
            pytest.fail(f"`sparkjobs up` exited with {process.returncode}:\n{text}")
        time.sleep(0.2)
    pytest.fail(f"no {needle!r} after {READY_TIMEOUT_S} s:\n{log.read_text(errors='replace')}")


def test_up_runs_everything_answers_pings_refuses_a_second_and_stops_clean(
    up_env: dict[str, str], tmp_path: Path
) -> None:
    log = tmp_path / "up.log"
    with log.open("wb") as out:
        up = subprocess.Popen(
            [sys.executable, "-m", "sparkjobs", "up"],
            env=up_env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        text = wait_for_line(log, READY_LINE, up)
        for name in ("worker spark1", "worker spark2", "beat", "flower"):
            assert f"started {name}" in text

        pinged = sparkjobs(up_env, "ping", "--json")
        assert pinged.returncode == 0, pinged.stdout + pinged.stderr
        assert [(a["node"], a["ok"]) for a in json.loads(pinged.stdout)] == [
            ("spark1", True),
            ("spark2", True),
        ]

        second = sparkjobs(up_env, "up")
        assert second.returncode == 2
        assert "already running" in second.stderr
        assert str(up.pid) in second.stderr

        children = descendants(up.pid)
        assert len(children) >= 5  # broker or not, 2 workers, beat, flower
        up.send_signal(signal.SIGTERM)
        assert up.wait(timeout=60) == 0
        assert "stopped." in log.read_text()
        assert alive(children) == set(), "`up` left processes behind"
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
