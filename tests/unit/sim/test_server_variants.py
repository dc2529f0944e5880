"""The `openai` simulator plays llama.cpp's servers where they differ from vLLM in what
sparkjobs reads: no /health, no usage chunk, their metric names, their errors."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.support.sim import StartSims

CHAT = {"model": "gemma-4-26b-a4b", "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 3, "stream": True, "stream_options": {"include_usage": True}}  # fmt: skip
LONG = {**CHAT, "messages": [{"role": "user", "content": "word " * 3000}], "stream": False}


def _events(body: str) -> list[tuple[str, str]]:
    """(field, value) of each SSE event."""
    found = []
    for event in body.strip("\n").split("\n\n"):
        field, _, value = event.partition(": ")
        found.append((field, value))
    return found


def test_llama_cpp_python_has_no_health_no_metrics_and_sends_no_usage(
    start_sims: StartSims,
) -> None:
    url = start_sims(like="llama-cpp-python").url("gemma")
    assert httpx.get(f"{url}/health").status_code == 404
    assert httpx.get(f"{url}/metrics").json() == {"detail": "Not Found"}
    assert httpx.get(f"{url}/v1/models").json()["data"][0]["owned_by"] == "me"
    events = _events(httpx.post(f"{url}/v1/chat/completions", json=CHAT).text)
    assert events[-1] == ("data", "[DONE]")
    chunks = [json.loads(value) for _, value in events[:-1]]
    assert all(chunk["choices"] for chunk in chunks)  # no `choices: []` usage chunk
    assert not any("usage" in chunk for chunk in chunks)


def test_llama_server_answers_health_with_a_status_and_metrics_under_its_names(
    start_sims: StartSims,
) -> None:
    url = start_sims(like="llama-server").url("gemma")
    assert httpx.get(f"{url}/health").json() == {"status": "ok"}
    page = httpx.get(f"{url}/metrics").text
    for name in ("llamacpp:requests_processing", "llamacpp:requests_deferred",
                 "llamacpp:kv_cache_usage_ratio"):  # fmt: skip
        assert f"\n{name} " in page
    assert "vllm:" not in page


@pytest.mark.parametrize(
    ("like", "kind", "said"),
    [
        ("vllm", "BadRequestError", "This model's maximum context length is 2048 tokens."),
        ("llama-server", "exceed_context_size_error",
         "the request exceeds the available context size, try increasing it"),
        ("llama-cpp-python", "invalid_request_error",
         "This model's maximum context length is 2048 tokens."),
    ],
)  # fmt: skip
def test_a_prompt_over_the_context_is_refused_in_each_servers_words(
    start_sims: StartSims, like: str, kind: str, said: str
) -> None:
    url = start_sims(like=like, context_tokens=2048).url("gemma")
    reply = httpx.post(f"{url}/v1/chat/completions", json=LONG)
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["type"] == kind
    assert error["message"].startswith(said)
    if like == "llama-cpp-python":
        assert error["code"] == "context_length_exceeded"


def test_llama_server_ends_a_failing_stream_with_an_error_event_and_no_done(
    start_sims: StartSims,
) -> None:
    url = start_sims(like="llama-server", midstream_error_rate=1.0).url("gemma")
    events = _events(httpx.post(f"{url}/v1/chat/completions", json={**CHAT, "max_tokens": 8}).text)
    field, value = events[-1]
    assert field == "error"
    assert json.loads(value)["type"] == "server_error"
    assert ("data", "[DONE]") not in events


def test_the_llama_cpp_servers_serve_any_model_name_and_list_their_own(
    start_sims: StartSims,
) -> None:
    url = start_sims(like="llama-cpp-python", served_models=["gemma-3-270m"]).url("gemma")
    assert [m["id"] for m in httpx.get(f"{url}/v1/models").json()["data"]] == ["gemma-3-270m"]
    reply = httpx.post(f"{url}/v1/chat/completions", json={**CHAT, "stream": False})
    assert reply.status_code == 200


def test_a_vllm_serving_another_model_refuses_the_configured_one(start_sims: StartSims) -> None:
    url = start_sims(served_models=["gemma-3-270m"]).url("gemma")
    reply = httpx.post(f"{url}/v1/chat/completions", json={**CHAT, "stream": False})
    assert reply.status_code == 404
    assert "gemma-4-26b-a4b" in reply.json()["error"]["message"]


def test_the_switches_of_a_variant_can_be_set_one_by_one_and_while_running(
    start_sims: StartSims,
) -> None:
    sims = start_sims(health_route=False, metric_names="llamacpp")
    url = sims.url("gemma")
    assert httpx.get(f"{url}/health").status_code == 404
    assert "llamacpp:requests_deferred" in httpx.get(f"{url}/metrics").text
    sims.set_faults("gemma", served_models=[], health_route=True)
    assert httpx.get(f"{url}/v1/models").json()["data"] == []
    assert httpx.get(f"{url}/health").status_code == 200


def test_a_web_page_answers_every_route_but_the_simulators_own(start_sims: StartSims) -> None:
    sims = start_sims(html=True)
    for name in ("gemma", "qwen"):
        for path in ("/health", "/v1/models", "/api/tags", "/nowhere"):
            reply = httpx.get(f"{sims.url(name)}{path}")
            assert reply.status_code == 200
            assert reply.headers["content-type"].startswith("text/html")
            assert "<title>" in reply.text
        assert httpx.get(f"{sims.url(name)}/_sim/stats").json()["service"] == name
