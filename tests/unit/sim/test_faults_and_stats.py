"""Fault injection, runtime fault changes, and the concurrency the simulators report."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

import httpx
import pytest

from sparkjobs.errors import RetryableError, UnknownService
from sparkjobs.sim import SimHost
from tests.support.sim import RunningSims, StartSims, sim_config

HELLO = [{"role": "user", "content": "Hi"}]


def _until(condition: Callable[[], bool], tries: int = 500) -> None:
    """Poll the simulator's stats until `condition` holds (they have no push channel)."""
    for _ in range(tries):
        if condition():
            return
        threading.Event().wait(0.01)
    raise AssertionError("condition never held")


def test_stats_report_the_most_requests_seen_at_once_and_reset(start_sims: StartSims) -> None:
    sims = start_sims(hang_rate=1.0)
    errors: list[Exception] = []

    def call() -> None:
        try:
            sims.client("qwen").chat(HELLO)
        except RetryableError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(3)]
    for thread in threads:
        thread.start()
    _until(lambda: sims.stats("qwen")["in_flight"] == 3)
    stats = sims.stats("qwen")
    assert (stats["max_in_flight"], stats["requests"], stats["fates"]) == (3, 3, {"hang": 3})
    sims.set_faults("qwen", hang_rate=0.0)
    sims.stop()  # ends the hanging requests: the clients see a dropped connection
    for thread in threads:
        thread.join()
    assert len(errors) == 3


def test_stats_reset_forgets_the_history(sims: RunningSims) -> None:
    sims.client("gemma").chat(HELLO, max_tokens=2)
    assert sims.stats("gemma")["max_in_flight"] == 1
    httpx.post(f"{sims.url('gemma')}/_sim/stats/reset").raise_for_status()
    assert sims.stats("gemma")["max_in_flight"] == 0
    assert sims.stats("gemma")["requests"] == 0


def test_faults_change_while_running(sims: RunningSims) -> None:
    client = sims.client("gemma")
    sims.set_faults("gemma", error_rate=1.0)
    with pytest.raises(RetryableError, match="500"):
        client.chat(HELLO)
    sims.set_faults("gemma", error_rate=0.0)
    assert client.chat(HELLO, max_tokens=2).text


def test_faults_that_only_apply_at_start_are_refused_at_runtime(sims: RunningSims) -> None:
    reply = httpx.post(f"{sims.url('gemma')}/_sim/faults", json={"refuse": True})
    assert reply.status_code == 400
    assert "cannot change refuse" in reply.json()["error"]


def test_an_unknown_service_cannot_be_simulated() -> None:
    with pytest.raises(UnknownService, match="known: gemma, qwen, orpheus, clone"):
        SimHost(sim_config(), ["gemm"])


def test_a_refusing_simulator_keeps_its_port_but_refuses(start_sims: StartSims) -> None:
    sims = start_sims(refuse=True, names=("gemma",), config=sim_config())
    port = sims.host["gemma"].port
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_profiles_come_from_the_config_per_service(start_sims: StartSims) -> None:
    config = sim_config(sim={"gemma": {"tokens_per_s": 99.0, "error_rate": 1.0}})
    sims = start_sims(config=config)
    assert sims.stats("gemma")["profile"]["tokens_per_s"] == 99.0
    assert sims.stats("qwen")["profile"]["tokens_per_s"] == 10.0  # the kind's default
    with pytest.raises(RetryableError):
        sims.client("gemma").chat(HELLO)
    assert sims.client("qwen").chat(HELLO, options={"num_predict": 1}).text
