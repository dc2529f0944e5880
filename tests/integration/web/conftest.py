"""A running cluster (simulators, a worker per node) with the run page and Flower."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from tests.integration.jobs.conftest import cluster_sims, workers
from tests.support.cluster import Cluster

__all__ = ["cluster_sims", "serving", "workers"]

JOB_FILE = """
from sparkjobs.jobs.define import chat, cron, job, speak

job("morning-briefing", schedule=cron("0 7 * * *"), description="a briefing, read aloud",
    steps=[chat("Write a two-sentence morning briefing."), speak("{previous}", voice="tara")])
"""
READY_TIMEOUT_S = 60.0  # a hang guard, not a speed claim


def wait_for_http(url: str, cluster: Cluster) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        for process in cluster.processes:
            assert process.poll() is None, f"a process exited while waiting for {url}"
        time.sleep(0.2)
    pytest.fail(f"{url} did not answer in {READY_TIMEOUT_S} s")


@pytest.fixture
def serving(workers: Cluster, tmp_path: Path) -> Cluster:
    """The cluster with a job file, `sparkjobs web` and `sparkjobs flower` running."""
    schedules = workers.path.parent / "schedules"
    schedules.mkdir(exist_ok=True)
    (schedules / "briefing.py").write_text(JOB_FILE)
    # A top-level key must come before the first table of the file.
    workers.path.write_text(
        f"schedules_dir = {json.dumps(str(schedules))}\n" + workers.path.read_text()
    )
    config = workers.config
    workers.start("web", log=tmp_path / "web.log")
    # The tests read task labels through Flower's REST API, opened here as a person
    # on this machine would open it.
    workers.env["SPARKJOBS_FLOWER__OPEN_API"] = "true"
    workers.start("flower", log=tmp_path / "flower.log")
    wait_for_http(f"http://127.0.0.1:{config.web.port}/healthz", workers)
    wait_for_http(f"http://127.0.0.1:{config.flower.port}/healthcheck", workers)
    return workers
