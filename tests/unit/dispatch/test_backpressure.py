"""Backpressure: reading a server's own load, and when it holds work back."""

from __future__ import annotations

import pytest

from sparkjobs.dispatch.backpressure import (
    ServerLoad,
    judge,
    parse_ollama_ps,
    parse_vllm_metrics,
)
from sparkjobs.sim.metrics import VllmMetrics


def test_the_simulated_vllm_metrics_page_gives_its_load() -> None:
    page = VllmMetrics().render("gemma-4-26b-a4b", running=5, waiting=3, kv_usage=0.42)
    load = parse_vllm_metrics(page)
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
    load = parse_vllm_metrics(page)
    assert load.waiting == 7
    assert load.running is None
    assert load.kv_cache_usage == 0.9


def test_an_empty_page_says_nothing() -> None:
    assert parse_vllm_metrics("") == ServerLoad()


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
