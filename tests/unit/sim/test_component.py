"""`up` starts simulators only where no server answers, and knows when they are ready."""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator

import pytest

from sparkjobs.up.component import Stage
from sparkjobs.up.simulators import components, health_probe
from tests.support.services import free_port
from tests.support.sim import StartSims, sim_config


@pytest.fixture
def listening() -> Iterator[int]:
    """A port where something answers (a real server, as far as `up` can tell)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


def test_up_simulates_only_the_services_that_do_not_answer(listening: int) -> None:
    free = free_port()
    config = sim_config(
        gemma={"url": f"http://127.0.0.1:{listening}"},
        qwen={"url": f"http://127.0.0.1:{free}"},
        orpheus={"url": f"http://127.0.0.1:{free_port()}",
                 "backend_url": f"http://127.0.0.1:{listening}"},
        clone={"url": f"http://127.0.0.1:{listening}"},
    )  # fmt: skip
    found = {c.name: c for c in components(config)}
    assert sorted(found) == ["sim orpheus", "sim qwen"]
    qwen = found["sim qwen"]
    assert qwen.argv == (sys.executable, "-m", "sparkjobs", "sim", "--service", "qwen")
    assert (qwen.stage, qwen.simulated) == (Stage.SIMULATORS, True)
    assert "simulated Ollama" in qwen.where
    assert found["sim orpheus"].argv[-1] == "--no-backend"  # its backend is real


def test_the_ready_probe_turns_true_once_the_simulator_answers(start_sims: StartSims) -> None:
    sims = start_sims(config=sim_config(), names=("clone",), loading_s=100.0)
    probe = health_probe(sims.url("clone"), "/health")
    assert probe() is False
    sims.ready()
    assert probe() is True
