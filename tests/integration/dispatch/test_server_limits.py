"""Real worker processes against simulated servers: the limit, outages, permanent
errors, and a killed worker's lease."""

from __future__ import annotations

import functools
import signal
import uuid

import pytest

from sparkjobs.broker.client import key
from sparkjobs.dispatch import wait_reason
from sparkjobs.dispatch.leases import Leases
from sparkjobs.jobs.define import chat, job, speak
from sparkjobs.runs.submit import submit_job
from sparkjobs.runs.wait import wait_for_run
from sparkjobs.sim import SimHost
from sparkjobs.store.models import AttemptStatus, Status
from tests.integration.dispatch.conftest import HANG_GUARD_S, load_run, poll, tune
from tests.support.cluster import Cluster, wait_for_workers
from tests.support.services import Broker, free_port
from tests.support.sim import TEST_TIME_SCALE, RunningSims

pytestmark = pytest.mark.redis


def simulate(cluster: Cluster, *names: str, **profile: object) -> RunningSims:
    sims = RunningSims(SimHost(cluster.config, names, {"time_scale": TEST_TIME_SCALE, **profile}))
    sims.ready()
    return sims


def start_workers(cluster: Cluster, node: str, *, count: int) -> None:
    """`count` worker processes for one node, each serving artifacts on its own port."""
    base = cluster.env
    port = cluster.config.artifacts_port(node)
    for number in range(count):
        copy = cluster.path.with_name(f"worker-{number}.toml")
        copy.write_text(cluster.path.read_text().replace(f"= {port}\n", f"= {free_port()}\n"))
        cluster.env = {**base, "SPARKJOBS_CONFIG": str(copy)}
        try:
            cluster.start("worker", "--node", node)
        finally:
            cluster.env = base
    wait_for_workers(cluster, [node])


def leases_of(cluster: Cluster, broker: Broker) -> Leases:
    """The cluster's leases, through the test's own Redis client (closed by its fixture)."""
    return Leases(broker.client, functools.partial(key, cluster.config), ttl_s=1)


def test_several_worker_processes_never_exceed_a_servers_limit(cluster: Cluster) -> None:
    tune(cluster, replace={"max_in_flight = 8": "max_in_flight = 2"},
         append="[tasks]\nmax_retry_delay_s = 1\n")  # fmt: skip
    # Slow answers, so that calls overlap and the limit is what stops them.
    sims = simulate(cluster, "gemma", slow_factor=20.0)
    try:
        start_workers(cluster, "spark1", count=3)
        asking = job("asking", steps=[chat("Say something about {params.n}.", max_tokens=40)],
                     params={"n": 0})  # fmt: skip
        runs = [submit_job(cluster.config, asking, params={"n": n}, trigger="submit").run_id
                for n in range(16)]  # fmt: skip
        for run_id in runs:
            run = wait_for_run(cluster.config, run_id, timeout_s=HANG_GUARD_S)
            assert run.status == Status.SUCCEEDED, run.error
        stats = sims.stats("gemma")
        assert stats["requests"] == 16
        assert stats["max_in_flight"] == 2  # reached, never exceeded
    finally:
        sims.stop()


def test_a_job_waits_through_an_outage_and_completes_when_the_server_returns(
    cluster: Cluster,
) -> None:
    tune(cluster, append="[dispatch]\nhealth_interval_s = 0.2\nmax_wait_delay_s = 0.5\n")
    cluster.start("worker", "--node", "spark1")  # no server answers at gemma's URL yet
    wait_for_workers(cluster, ["spark1"])
    asking = job("asking", steps=[chat("Say hello.", max_tokens=20)])
    run_id = submit_job(cluster.config, asking, trigger="submit").run_id
    reasons: list[str] = []

    def waiting_for_health() -> bool:
        reason = wait_reason(load_run(cluster, run_id).steps[0])
        reasons.append(reason or "")
        return bool(reason and reason.startswith("health: gemma"))

    poll("the step waits for gemma's health", waiting_for_health)
    assert "down" in reasons[-1]
    sims = simulate(cluster, "gemma")
    try:
        run = wait_for_run(cluster.config, run_id, timeout_s=HANG_GUARD_S)
        assert run.status == Status.SUCCEEDED, run.error
        [step] = run.steps
        assert step.result is not None
        assert step.result.text
        assert wait_reason(step) is None
    finally:
        sims.stop()


def test_a_server_down_past_the_deadline_fails_the_job_naming_the_server(
    cluster: Cluster,
) -> None:
    tune(cluster, append="[dispatch]\nhealth_interval_s = 0.2\nwait_deadline_s = 1.0\n"
         "max_wait_delay_s = 0.3\n")  # fmt: skip
    cluster.start("worker", "--node", "spark1")
    wait_for_workers(cluster, ["spark1"])
    run_id = submit_job(cluster.config, job("asking", steps=[chat("Hi.")]), trigger="submit").run_id
    run = wait_for_run(cluster.config, run_id, timeout_s=HANG_GUARD_S)
    assert run.status == Status.FAILED
    assert run.error is not None
    assert "gemma" in run.error
    assert "down for" in run.error
    assert "wait_deadline_s" in run.error


def test_a_permanent_error_is_not_retried(cluster: Cluster) -> None:
    sims = simulate(cluster, "gemma")
    try:
        cluster.start("worker", "--node", "spark1")
        wait_for_workers(cluster, ["spark1"])
        wrong = job("wrong", steps=[chat("Hi.", model="no-such-model")])
        run = wait_for_run(cluster.config, submit_job(cluster.config, wrong, trigger="submit")
                           .run_id, timeout_s=HANG_GUARD_S)  # fmt: skip
        assert run.status == Status.FAILED
        [step] = run.steps
        assert [a.status for a in step.attempts] == [AttemptStatus.FAILED]
        assert "no-such-model" in (run.error or "")
        assert "the server serves gemma-4-26b-a4b (/v1/models)" in (run.error or "")
        assert sims.stats("gemma")["requests"] == 1  # the refused call; the list is no call
    finally:
        sims.stop()


def test_a_retryable_error_is_retried_and_every_attempt_is_recorded(cluster: Cluster) -> None:
    tune(cluster, append="[tasks]\nmax_retry_delay_s = 1\n")
    sims = simulate(cluster, "gemma", error_rate=0.5, seed=3)
    try:
        cluster.start("worker", "--node", "spark1")
        wait_for_workers(cluster, ["spark1"])
        asking = job("asking", steps=[chat("Say {params.n}.", max_tokens=10)], params={"n": 0})
        runs = [submit_job(cluster.config, asking, params={"n": n}, trigger="submit").run_id
                for n in range(6)]  # fmt: skip
        attempts = 0
        for run_id in runs:
            run = wait_for_run(cluster.config, run_id, timeout_s=HANG_GUARD_S)
            attempts += len(run.steps[0].attempts)
        assert attempts == sims.stats("gemma")["requests"]
        assert sims.stats("gemma")["fates"].get("error", 0) > 0
    finally:
        sims.stop()


def test_a_killed_workers_lease_is_freed_by_its_ttl(cluster: Cluster, broker: Broker) -> None:
    tune(cluster, append="[dispatch]\nlease_ttl_s = 1.0\n")
    sims = simulate(cluster, "orpheus", hang_rate=1.0)  # every call hangs: the lease stays held
    leases = leases_of(cluster, broker)
    try:
        worker = cluster.start("worker", "--node", "spark2")
        wait_for_workers(cluster, ["spark2"])
        submit_job(cluster.config, job("say", steps=[speak("Hello there.")]), trigger="submit")
        poll("a call holds orpheus' lease", lambda: sims.stats("orpheus")["in_flight"] == 1)
        assert leases.held("orpheus") == 1
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
        poll("the killed worker's lease expires", lambda: leases.held("orpheus") == 0)
        lease, _ = leases.try_acquire("orpheus", 1, holder=uuid.uuid4().hex)
        assert lease is not None
    finally:
        sims.stop()
