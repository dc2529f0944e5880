"""Helpers of the CLI tests: a job folder, the store's runs, what the broker holds."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from sparkjobs.artifacts.locate import store_sessions
from sparkjobs.store.models import Run
from tests.support.cluster import Cluster
from tests.support.services import Broker

HANG_GUARD_S = 120.0

JOB_FILE = """
from sparkjobs import chat, custom, job

job("greeting", params={"name": "Ada", "times": 1},
    steps=[chat("Greet {params.name} {params.times} times.", max_tokens=30)])
job("doomed", steps=[custom("sjobs.steps:boom", service="gemma")])
"""
STEPS_FILE = """
from sparkjobs.errors import PermanentError


def boom(client, params, previous):
    raise PermanentError("boom: this step always fails")
"""


def with_jobs(cluster: Cluster, tmp_path: Path) -> Cluster:
    """The cluster with a schedules folder holding two jobs (`schedules_dir` set)."""
    folder = tmp_path / "sjobs"
    folder.mkdir()
    (folder / "jobs.py").write_text(JOB_FILE)
    (folder / "steps.py").write_text(STEPS_FILE)  # defines no job; importable as sjobs.steps
    text = cluster.path.read_text()
    cluster.path.write_text(f"schedules_dir = {json.dumps(str(folder))}\n{text}")
    return cluster


def run_count(cluster: Cluster) -> int:
    with store_sessions(cluster.config) as sessions, sessions() as session:
        return int(session.scalar(select(func.count()).select_from(Run)) or 0)


def broker_keys(broker: Broker) -> list[bytes]:
    return list(broker.client.scan_iter(match=f"{broker.prefix}*"))


def queue_lengths(broker: Broker) -> tuple[int, int]:
    from sparkjobs.broker.client import queue_keys  # each queue has priority sub-queues

    return tuple(  # type: ignore[return-value]
        sum(int(broker.client.llen(k)) for k in queue_keys(broker.prefix, n))
        for n in ("spark1", "spark2")
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr}"
    return result.stdout


def shown(cluster: Cluster, run_id: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(ok(cluster.sparkjobs("show", run_id, "--json")))
    return data


def poll(what: str, check: Any, timeout_s: float = HANG_GUARD_S) -> Any:
    """Call `check()` until it returns something true; fail after the hang guard."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what}: not seen within {timeout_s} s (hang guard)")
