"""Backpressure: reading a server's own load, and when it holds work back."""

from __future__ import annotations

import pytest

from sparkjobs.dispatch.backpressure import (
    ServerLoad,
    judge,
    parse_metrics,
    parse_ollama_ps,
)
from sparkjobs.sim.metrics import VllmMetrics


def test_the_simulated_vllm_metrics_page_gives_its_load() -> None:
    page = VllmMetrics().render("gemma-4-26b-a4b", running=5, waiting=3, kv_usage=0.42)
    load = parse_metrics(page)
    assert (load.running, load.waiting, load.kv_cache_usage) == (5, 3, 0.42)


def test_gauges_of_several_engines_are_summed_and_the_fullest_cache_counts() -> None:
    page = "\n".join([
        '# TYPE vllm:num_requests_waiting gauge',
        'vllm:num_requests_waiting{engine="0",model_name="a b"} 2.0',
        'vllm:num_requests_waiting{engine="1",model_name="a b"} 5.0',
        'vllm:gpu_cache_usage_perc{engine="0"} 0.3',
        'vllm:gpu_cache_usage_perc{engine="1"} 0.9',
        "not a sample",
    ])  # fmt: skip
    load = parse_metrics(page)
    assert load.waiting == 7
    assert load.running is None
    assert load.kv_cache_usage == 0.9


def test_an_empty_page_says_nothing() -> None:
    assert parse_metrics("") == ServerLoad()


def test_llama_servers_page_gives_its_load_under_its_own_names() -> None:
    page = VllmMetrics().render_llamacpp(running=2, waiting=11, kv_usage=0.5)
    load = parse_metrics(page)
    assert (load.running, load.waiting, load.kv_cache_usage) == (2, 11, 0.5)
    assert judge(load, max_waiting=8, max_kv_cache_usage=0.98).overloaded


def test_a_llama_server_without_the_kv_cache_gauge_is_judged_on_its_queue() -> None:
    page = "\n".join([
        "# TYPE llamacpp:requests_processing gauge", "llamacpp:requests_processing 1",
        "# TYPE llamacpp:requests_deferred gauge", "llamacpp:requests_deferred 0",
        "llamacpp:prompt_tokens_total 6886",
    ])  # fmt: skip
    load = parse_metrics(page)
    assert load == ServerLoad(waiting=0, running=1)
    assert judge(load, max_waiting=8, max_kv_cache_usage=0.98).detail == "1 running, 0 waiting"


def test_a_page_with_none_of_the_known_names_holds_nothing_back() -> None:
    load = parse_metrics("# TYPE sglang:num_queue_reqs gauge\nsglang:num_queue_reqs 99\n")
    assert load == ServerLoad()
    assert not judge(load, max_waiting=0, max_kv_cache_usage=0.1).overloaded


def test_ollama_ps_lists_the_resident_models() -> None:
    load = parse_ollama_ps({"models": [{"name": "qwen2.5:32b", "model": "qwen2.5:32b"}]})
    assert load.resident_models == ("qwen2.5:32b",)
    assert parse_ollama_ps({"models": []}).resident_models == ()


@pytest.mark.parametrize(
    ("load", "overloaded"),
    [
        (ServerLoad(waiting=8, running=64, kv_cache_usage=0.5), False),
        (ServerLoad(waiting=9, running=64, kv_cache_usage=0.5), True),
        (ServerLoad(waiting=0, running=10, kv_cache_usage=0.99), True),
        (ServerLoad(), False),
        (ServerLoad(resident_models=()), False),
    ],
)
def test_a_long_server_queue_or_a_full_kv_cache_holds_work_back(
    load: ServerLoad, overloaded: bool
) -> None:
    verdict = judge(load, max_waiting=8, max_kv_cache_usage=0.98, models=("qwen2.5:32b",))
    assert verdict.overloaded is overloaded


def test_the_verdict_says_why() -> None:
    verdict = judge(ServerLoad(waiting=20), max_waiting=8, max_kv_cache_usage=0.98)
    assert "20 requests already wait" in verdict.detail
    assert "dispatch.max_server_waiting = 8" in verdict.detail
    cold = judge(ServerLoad(resident_models=()), max_waiting=8, max_kv_cache_usage=0.98,
                 models=("qwen2.5:32b",))  # fmt: skip
    assert "model qwen2.5:32b not in memory" in cold.detail
