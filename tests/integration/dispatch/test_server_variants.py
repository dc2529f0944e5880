"""Real worker processes against the servers the simulator plays (llama.cpp's
llama-server, llama-cpp-python without /health or usage) and against servers that are
wrong: another model, no model, a web page, a prompt over the context. Each says what
it saw, on the step, in `show`, `runs` and `doctor`, with no traceback anywhere."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sparkjobs.broker.app import create_app
from sparkjobs.dispatch.health import HealthBoard, ServerState
from sparkjobs.dispatch.monitor import HealthMonitor
from sparkjobs.jobs.define import chat, job
from sparkjobs.runs.submit import submit_job
from sparkjobs.runs.wait import wait_for_run
from sparkjobs.sim import SimHost
from sparkjobs.store.models import AttemptStatus, Status
from tests.integration.dispatch.conftest import HANG_GUARD_S, load_run, poll, tune
from tests.support.cluster import Cluster, wait_for_workers
from tests.support.sim import TEST_TIME_SCALE, RunningSims

pytestmark = pytest.mark.redis

FAST_HEALTH = "[dispatch]\nhealth_interval_s = 0.2\nmax_wait_delay_s = 0.5\n"
ASKING = job("asking", steps=[chat("Say hello.", max_tokens=12)])


def simulate(cluster: Cluster, **profile: object) -> RunningSims:
    sims = RunningSims(SimHost(cluster.config, ["gemma"], {"time_scale": TEST_TIME_SCALE,
                                                           **profile}))  # fmt: skip
    sims.ready()
    return sims


def start_worker(cluster: Cluster) -> None:
    cluster.start("worker", "--node", "spark1")
    wait_for_workers(cluster, ["spark1"])


def doctor_on(cluster: Cluster, service: str) -> dict[str, Any]:
    done = cluster.sparkjobs("doctor", "--node", "spark1", "--json")
    assert done.stdout, done.stderr
    assert "Traceback" not in done.stderr
    findings = json.loads(done.stdout)["findings"]
    found: dict[str, Any] = next(f for f in findings if f["name"] == f"service {service}")
    return found


def waiting_for(cluster: Cluster, run_id: object, *parts: str) -> str:
    """Poll until the run's step waits for a reason holding every one of `parts`."""
    seen: list[str] = []

    def holds() -> bool:
        reason = load_run(cluster, run_id).steps[0].waiting_for or ""  # type: ignore[arg-type]
        seen.append(reason)
        return all(part in reason for part in parts)

    poll(f"the step waits for {parts} (last seen: {seen[-1:]})", holds)
    return seen[-1]


def no_traceback(cluster: Cluster) -> None:
    for process in cluster.processes:
        assert "Traceback" not in cluster.output(process, tail_chars=200_000)


@pytest.mark.parametrize("like", ["llama-server", "llama-cpp-python"])
def test_a_chat_runs_on_each_llama_cpp_server(cluster: Cluster, like: str) -> None:
    tune(cluster, append=FAST_HEALTH)
    sims = simulate(cluster, like=like)
    try:
        start_worker(cluster)
        run_id = submit_job(cluster.config, ASKING, trigger="submit").run_id
        run = wait_for_run(cluster.config, run_id, timeout_s=HANG_GUARD_S)
        assert run.status == Status.SUCCEEDED, run.error
        [step] = run.steps
        assert step.tokens_out == 12
        if like == "llama-cpp-python":  # no usage chunk: the prompt's size is not known
            assert step.tokens_in is None
        else:
            assert step.tokens_in
        found = doctor_on(cluster, "gemma")
        assert found["status"] == "ok", found
        if like == "llama-cpp-python":
            assert "no /health (GET /health answers 404); GET /v1/models answers 200 with " \
                   "gemma-4-26b-a4b" in found["detail"]  # fmt: skip
        no_traceback(cluster)
    finally:
        sims.stop()


def test_a_server_serving_another_model_holds_the_step_saying_so_everywhere_until_fixed(
    cluster: Cluster,
) -> None:
    tune(cluster, append=FAST_HEALTH)
    sims = simulate(cluster, like="llama-cpp-python", served_models=["gemma-3-270m"])
    try:
        start_worker(cluster)
        run_id = submit_job(cluster.config, ASKING, trigger="submit").run_id
        url = sims.url("gemma")
        said = (f"services.gemma.models lists gemma-4-26b-a4b; the server at {url} serves "
                'gemma-3-270m; fix: set models = ["gemma-3-270m"] or start the server with '
                "--served-model-name gemma-4-26b-a4b")  # fmt: skip
        reason = waiting_for(cluster, run_id, "health: gemma", said)
        assert "GET /health answers 404" in reason

        text = cluster.sparkjobs("show", str(run_id))
        assert text.returncode == 0, text.stderr
        assert "waiting: health: gemma" in text.stdout
        assert said in text.stdout
        (step,) = json.loads(cluster.sparkjobs("show", str(run_id), "--json").stdout)["steps"]
        assert said in step["waiting_for"]
        assert step["waiting_since"]
        listed = json.loads(cluster.sparkjobs("runs", "--json").stdout)
        assert said in next(r for r in listed if r["run_id"] == str(run_id))["waiting_for"]
        table = cluster.sparkjobs("runs").stdout
        [row] = [line for line in table.splitlines() if line.startswith(f" {run_id} ")]
        assert "health" in row  # the id whole, at any width, and the wait in a word
        assert f"{run_id} waiting: health: gemma" in table
        assert said in table

        found = doctor_on(cluster, "gemma")
        assert found["status"] == "down"
        assert "services.gemma.models lists gemma-4-26b-a4b" in found["detail"]
        assert found["fix"].startswith('set models = ["gemma-3-270m"]')

        sims.set_faults("gemma", served_models=["gemma-4-26b-a4b"])  # the server, fixed
        run = wait_for_run(cluster.config, run_id, timeout_s=HANG_GUARD_S)
        assert run.status == Status.SUCCEEDED, run.error
        no_traceback(cluster)
    finally:
        sims.stop()


@pytest.mark.parametrize(
    ("profile", "seen"),
    [
        ({"like": "llama-cpp-python", "served_models": []},
         "GET /v1/models answers 200 with no model listed"),
        ({"html": True}, 'GET /health answers 200 with an HTML page ("Welcome to nginx!")'),
    ],
    ids=["no-model-listed", "html"],
)  # fmt: skip
def test_a_server_that_cannot_serve_holds_the_step_then_fails_it_saying_what_was_seen(
    cluster: Cluster, profile: dict[str, Any], seen: str
) -> None:
    tune(cluster, append=FAST_HEALTH.replace("[dispatch]\n", "[dispatch]\nwait_deadline_s = 3\n"))
    sims = simulate(cluster, **profile)
    try:
        start_worker(cluster)
        run_id = submit_job(cluster.config, ASKING, trigger="submit").run_id
        run = wait_for_run(cluster.config, run_id, timeout_s=HANG_GUARD_S)
        assert run.status == Status.FAILED
        assert run.error is not None
        assert "gave up waiting for gemma" in run.error
        assert seen in run.error
        assert "fix: " in run.error
        assert sims.stats("gemma")["requests"] == 0  # no call was sent to it
        no_traceback(cluster)
    finally:
        sims.stop()


def test_a_prompt_over_the_servers_context_fails_at_once_with_its_message(
    cluster: Cluster,
) -> None:
    sims = simulate(cluster, like="llama-server", context_tokens=64)
    try:
        start_worker(cluster)
        long = job("long", steps=[chat("Summarize: " + "word " * 300, max_tokens=8)])
        run_id = submit_job(cluster.config, long, trigger="submit").run_id
        run = wait_for_run(cluster.config, run_id, timeout_s=HANG_GUARD_S)
        assert run.status == Status.FAILED
        [step] = run.steps
        assert [a.status for a in step.attempts] == [AttemptStatus.FAILED]
        assert "the request exceeds the available context size" in (run.error or "")
        assert "shorten the prompt or lower max_tokens" in (run.error or "")
        assert sims.stats("gemma")["requests"] == 1
        no_traceback(cluster)
    finally:
        sims.stop()


def test_a_workers_first_probe_compares_the_models_and_so_does_one_after_an_outage(
    cluster: Cluster,
) -> None:
    config = cluster.config
    sims = simulate(cluster)
    try:
        app = create_app(config)
        monitor = HealthMonitor(config, "spark1", app.redis)
        board = HealthBoard(app.redis, config)
        monitor.probe_once()
        assert board.read("gemma").state is ServerState.UP  # type: ignore[union-attr]
        # A model swapped without an outage is found by the next check due (a minute on).
        sims.set_faults("gemma", served_models=["gemma-3-270m"])
        monitor.probe_once()
        assert board.read("gemma").state is ServerState.UP  # type: ignore[union-attr]
        sims.set_faults("gemma", html=True)  # down for a moment
        monitor.probe_once()
        assert board.read("gemma").state is ServerState.DOWN  # type: ignore[union-attr]
        sims.set_faults("gemma", html=False)  # back, with the other model
        monitor.probe_once()
        reading = board.read("gemma")
        assert reading is not None
        assert reading.state is ServerState.DOWN
        assert "serves gemma-3-270m" in reading.detail
        assert reading.fix.startswith('set models = ["gemma-3-270m"]')
    finally:
        sims.stop()
