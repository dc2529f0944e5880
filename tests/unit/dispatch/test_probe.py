"""A worker's probe against each server the simulator plays, and against servers that
are wrong in the ways people get them wrong: each reading says what was seen, and the
fix that follows from it."""

from __future__ import annotations

from typing import Any

import pytest

from sparkjobs.config.model import Config
from sparkjobs.dispatch.health import Probe, Reading, ServerState
from sparkjobs.dispatch.probe import probe_service, served_problem
from tests.support.sim import RunningSims, StartSims, sim_config

MISMATCH_FIX = 'set models = ["gemma-3-270m"] or start the server with --served-model-name '


def probe(
    sims: RunningSims, name: str = "gemma", *, check_models: bool = True, **changes: Any
) -> Probe:
    config: Config = sims.host.config
    return probe_service(name, sims.service(name, **changes), config, busy=False,
                         check_models=check_models)  # fmt: skip


@pytest.mark.parametrize("like", ["vllm", "llama-server", "llama-cpp-python"])
def test_each_server_is_up(start_sims: StartSims, like: str) -> None:
    found = probe(start_sims(like=like))
    assert found.state is ServerState.UP, found
    assert found.fix == ""


def test_a_server_without_health_is_up_by_its_model_list_and_says_so(start_sims: StartSims) -> None:
    found = probe(start_sims(like="llama-cpp-python"), check_models=False)
    assert found == Probe(ServerState.UP, "no /health (GET /health answers 404); GET /v1/models "
                          "answers 200 with gemma-4-26b-a4b")  # fmt: skip


def test_llama_servers_metrics_give_its_load(start_sims: StartSims) -> None:
    found = probe(start_sims(like="llama-server"))
    assert found.detail == "0 running, 0 waiting; KV cache 0%"


def test_no_metrics_is_no_load_and_no_fault(start_sims: StartSims) -> None:
    found = probe(start_sims(health_route=True, metric_names="none"))
    assert found == Probe(ServerState.UP)


@pytest.mark.parametrize("like", ["vllm", "llama-cpp-python"])
def test_a_server_serving_another_model_is_down_naming_both_and_the_fix(
    start_sims: StartSims, like: str
) -> None:
    sims = start_sims(like=like, served_models=["gemma-3-270m"])
    found = probe(sims)
    url = sims.url("gemma")
    assert found.state is ServerState.DOWN
    assert found.detail.endswith(
        f"services.gemma.models lists gemma-4-26b-a4b; the server at {url} serves gemma-3-270m"
    )
    assert found.fix.startswith(MISMATCH_FIX + "gemma-4-26b-a4b")
    reading = Reading("gemma", found.state, found.detail, 0.0, 0.0, fix=found.fix)
    assert reading.describe(url, 42.0).endswith(f"serves gemma-3-270m; fix: {found.fix}")


def test_with_health_the_models_are_compared_only_when_asked(start_sims: StartSims) -> None:
    sims = start_sims(served_models=["gemma-3-270m"])
    assert probe(sims, check_models=False).state is ServerState.UP
    assert probe(sims, check_models=True).state is ServerState.DOWN


def test_a_server_that_lists_no_model_is_down(start_sims: StartSims) -> None:
    found = probe(start_sims(like="llama-cpp-python", served_models=[]))
    assert found.state is ServerState.DOWN
    assert "GET /v1/models answers 200 with no model listed" in found.detail
    assert found.fix == "start the server with a model (gemma-4-26b-a4b)"


def test_a_web_page_is_down_saying_so(start_sims: StartSims) -> None:
    sims = start_sims(html=True)
    found = probe(sims)
    assert found.detail == (
        'GET /health answers 200 with an HTML page ("Welcome to nginx!"): no OpenAI-compatible '
        f"server answers at {sims.url('gemma')}"
    )
    assert "point services.gemma.url at the OpenAI-compatible server's root" in found.fix
    ollama = probe(sims, "qwen")
    assert ollama.state is ServerState.DOWN
    assert "GET /api/version answers 200 with an HTML page" in ollama.detail


def test_a_url_ending_in_v1_is_down_saying_what_answered(start_sims: StartSims) -> None:
    sims = start_sims(like="llama-cpp-python")
    found = probe(sims, url=sims.url("gemma") + "/v1")
    assert found.state is ServerState.DOWN
    assert found.detail.startswith("GET /health answers 404; GET /v1/models answers 404")
    assert "without /v1" in found.fix


def test_nothing_listening_is_down_with_the_fix_to_start_it(start_sims: StartSims) -> None:
    found = probe(start_sims(refuse=True))
    assert found.state is ServerState.DOWN
    assert found.fix.startswith("nothing listens at http://127.0.0.1:")
    assert "start the openai server on n1" in found.fix


def test_ollama_without_the_model_is_down_with_the_pull_that_fixes_it(
    start_sims: StartSims,
) -> None:
    sims = start_sims(served_models=["llama3.2"])
    found = probe(sims, "qwen")
    assert found.state is ServerState.DOWN
    assert "services.qwen.models lists qwen2.5:32b" in found.detail
    assert "serves llama3.2:latest" in found.detail
    assert "ollama pull qwen2.5:32b" in found.fix
    assert probe(start_sims(), "qwen").state is ServerState.UP


def test_served_problem_reads_the_list_from_here(start_sims: StartSims) -> None:
    sims = start_sims(served_models=["gemma-3-270m"])
    problem = served_problem("gemma", sims.service("gemma"))
    assert problem is not None
    assert problem.fix.startswith(MISMATCH_FIX)
    assert served_problem("orpheus", sims.service("orpheus")) is None  # no model list
    config = sim_config()
    assert served_problem("gemma", config.services["gemma"]) is None  # nothing answers
