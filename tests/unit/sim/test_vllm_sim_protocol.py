"""The vLLM simulator speaks vLLM's wire format, byte for byte where it matters."""

from __future__ import annotations

import json

import httpx

from tests.support.sim import RunningSims, StartSims

CHAT = {"model": "gemma-4-26b-a4b", "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 3, "stream": True, "stream_options": {"include_usage": True}}  # fmt: skip


def _events(body: str) -> list[str]:
    assert body.endswith("\n\n")
    events = body[:-2].split("\n\n")
    assert all(e.startswith("data: ") for e in events)
    return [e.removeprefix("data: ") for e in events]


def test_a_chat_stream_has_role_content_finish_with_text_usage_and_done(
    sims: RunningSims,
) -> None:
    reply = httpx.post(f"{sims.url('gemma')}/v1/chat/completions", json=CHAT)
    assert reply.headers["content-type"].startswith("text/event-stream")
    events = _events(reply.text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    finish = chunks[-2]["choices"][0]
    assert finish["finish_reason"] == "length"
    assert finish["delta"]["content"]  # vLLM's finish chunk still carries text
    assert "stop_reason" in finish
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == 3
    assert len({c["id"] for c in chunks}) == 1
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)


def test_a_mid_stream_error_is_one_error_event_then_done(start_sims: StartSims) -> None:
    sims = start_sims(midstream_error_rate=1.0)
    reply = httpx.post(f"{sims.url('gemma')}/v1/chat/completions", json=CHAT)
    assert reply.status_code == 200
    events = _events(reply.text)
    assert events[-1] == "[DONE]"
    assert json.loads(events[-2])["error"]["code"] == 500


def test_health_is_200_with_an_empty_body(sims: RunningSims) -> None:
    reply = httpx.get(f"{sims.url('gemma')}/health")
    assert (reply.status_code, reply.content) == (200, b"")


def test_models_carry_vllm_fields(sims: RunningSims) -> None:
    card = httpx.get(f"{sims.url('gemma')}/v1/models").json()["data"][0]
    assert (card["id"], card["owned_by"], card["max_model_len"]) == (
        "gemma-4-26b-a4b", "vllm", 32768)  # fmt: skip


def test_metrics_use_the_real_vllm_names(sims: RunningSims) -> None:
    httpx.post(f"{sims.url('gemma')}/v1/chat/completions", json=CHAT)
    text = httpx.get(f"{sims.url('gemma')}/metrics").text
    for name in (
        "vllm:num_requests_running{",
        "vllm:num_requests_waiting{",
        "vllm:kv_cache_usage_perc{",
        "vllm:time_to_first_token_seconds_bucket{",
    ):
        assert name in text
    assert (
        'vllm:time_to_first_token_seconds_count{engine="0",model_name="gemma-4-26b-a4b"} 1' in text
    )
    assert "gpu_cache_usage_perc" not in text


def test_the_flat_error_shape_of_old_vllm_is_offered(start_sims: StartSims) -> None:
    sims = start_sims(error_shape="flat")
    reply = httpx.post(f"{sims.url('gemma')}/v1/chat/completions",
                       json={**CHAT, "model": "nope"})  # fmt: skip
    assert reply.status_code == 404
    assert reply.json() == {"object": "error", "message": "The model `nope` does not exist.",
                            "type": "NotFoundError", "param": None, "code": 404}  # fmt: skip


def test_the_ollama_v1_face_sends_the_finish_in_a_chunk_of_its_own(sims: RunningSims) -> None:
    body = {**CHAT, "model": "qwen2.5:32b"}
    events = _events(httpx.post(f"{sims.url('qwen')}/v1/chat/completions", json=body).text)
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[-2]["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "length"}
    assert chunks[-1]["choices"] == []


def test_the_ollama_final_line_has_nanosecond_durations(sims: RunningSims) -> None:
    body = {"model": "qwen2.5:32b", "prompt": "Hi", "options": {"num_predict": 2}}
    reply = httpx.post(f"{sims.url('qwen')}/api/generate", json=body)
    assert reply.headers["content-type"] == "application/x-ndjson"
    final = json.loads(reply.text.splitlines()[-1])
    assert final["done"] is True
    assert final["eval_count"] == 2
    assert isinstance(final["eval_duration"], int)
    assert final["eval_duration"] > 1000
    assert isinstance(final["total_duration"], int)


def test_ollama_answers_its_root_and_version(sims: RunningSims) -> None:
    assert httpx.get(sims.url("qwen")).text == "Ollama is running"
    assert httpx.get(f"{sims.url('qwen')}/api/version").json()["version"]
