"""A waiting run says why: `submit --wait`, `--stream` and `wait` print the reason to
stderr when the run starts waiting and when it changes, never the same reason twice,
and a run no worker takes says that too. Real worker processes, a real broker and
store; the model server is absent or a simulator serving another model."""

from __future__ import annotations

import itertools
import re
import signal
import time

import pytest

from sparkjobs.jobs.define import chat, job
from sparkjobs.runs.submit import submit_job
from sparkjobs.sim import SimHost
from tests.integration.cli.support import HANG_GUARD_S
from tests.support.cluster import Cluster, wait_for_workers
from tests.support.sim import TEST_TIME_SCALE, RunningSims

pytestmark = pytest.mark.redis

# Waits short and quick, so that a step held by a down server fails within seconds.
SHORT_WAITS = ("[dispatch]\nhealth_interval_s = 0.2\nmax_wait_delay_s = 0.5\n"
               "wait_deadline_s = 4\n")  # fmt: skip


def worker_for_gemma(cluster: Cluster) -> None:
    with cluster.path.open("a") as config:
        config.write("\n" + SHORT_WAITS)
    cluster.start("worker", "--node", "spark1")
    wait_for_workers(cluster, ["spark1"])


def notes(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("waiting: ")]


@pytest.mark.parametrize("how", ["--wait", "--stream"])
def test_submit_says_why_the_run_waits_once_and_how_it_ended(cluster: Cluster, how: str) -> None:
    worker_for_gemma(cluster)  # nothing listens at gemma's URL
    done = cluster.sparkjobs("submit", "chat", "Say hello.", how, timeout_s=HANG_GUARD_S)
    assert done.returncode == 1, done.stderr
    said = notes(done.stderr)
    health = [line for line in said if line.startswith("waiting: health: gemma (http://")]
    assert len(health) == 1, done.stderr  # said once, not at each of its seconds
    assert "is down for" in health[0]
    assert "connection refused" in health[0]
    assert "fix: nothing listens at" in health[0]
    assert all(a != b for a, b in itertools.pairwise(said)), said
    assert "failed: run" in done.stderr
    assert "Traceback" not in done.stderr


def test_wait_says_what_the_run_waits_for_the_server_serving_another_model(
    cluster: Cluster,
) -> None:
    sims = RunningSims(SimHost(cluster.config, ["gemma"], {
        "time_scale": TEST_TIME_SCALE, "like": "llama-cpp-python",
        "served_models": ["gemma-3-270m"]}))  # fmt: skip
    sims.ready()
    try:
        worker_for_gemma(cluster)
        asking = job("asking", steps=[chat("Say hello.", max_tokens=8)])
        run_id = submit_job(cluster.config, asking, trigger="submit").run_id
        done = cluster.sparkjobs("wait", str(run_id), timeout_s=HANG_GUARD_S)
        assert done.returncode == 1
        [note] = notes(done.stderr)
        assert note.startswith("waiting: health: gemma (http://")
        assert "services.gemma.models lists gemma-4-26b-a4b" in note
        assert 'fix: set models = ["gemma-3-270m"]' in note
        assert "Traceback" not in done.stderr
    finally:
        sims.stop()


def test_a_run_no_worker_takes_says_so_after_a_few_quiet_seconds(cluster: Cluster) -> None:
    log = cluster.path.parent / "submit.log"
    submitting = cluster.start("submit", "chat", "Say hello.", "--wait", log=log)
    deadline = time.monotonic() + HANG_GUARD_S
    pattern = re.compile(
        r"waiting: queued for gemma on spark1, at most 8 at once; it starts when the worker of "
        r"spark1 takes it, but no worker publishes readings for spark1: is `sparkjobs worker "
        r"--node spark1` running\?"
    )
    while not pattern.search(log.read_text()):
        assert submitting.poll() is None, log.read_text()
        assert time.monotonic() < deadline, f"no reason said; the output: {log.read_text()}"
        time.sleep(0.1)
    submitting.send_signal(signal.SIGINT)
    assert submitting.wait(timeout=30) == 130
    assert "Traceback" not in log.read_text()
