"""sparkjobs' Ollama client against the simulated Ollama: NDJSON, errors, keep_alive."""

from __future__ import annotations

import threading

import pytest

from sparkjobs.backends import Delta, OllamaClient
from sparkjobs.errors import RetryableError, UnknownModel
from tests.support.sim import RunningSims, StartSims

HELLO = [{"role": "user", "content": "Summarize the night's logs."}]


def test_a_streamed_chat_records_timings_from_the_ndjson(sims: RunningSims) -> None:
    client: OllamaClient = sims.client("qwen")
    deltas: list[Delta] = []
    result = client.chat(HELLO, options={"num_predict": 12}, on_delta=deltas.append)
    assert len(deltas) == 12
    assert result.text == "".join(d.content for d in deltas)
    assert result.finish_reason == "length"
    assert result.timings.tokens_out == 12
    assert result.timings.ttft_ms is not None


def test_generate_without_streaming_reads_the_single_object(sims: RunningSims) -> None:
    client: OllamaClient = sims.client("qwen")
    result = client.generate("Say hello", stream=False, options={"num_predict": 8})
    assert result.text
    assert result.timings.tokens_out == 8
    assert result.timings.ttft_ms is None


def test_listing_routes_answer(sims: RunningSims) -> None:
    client: OllamaClient = sims.client("qwen")
    assert client.health().ok
    assert client.models() == ["qwen2.5:32b"]
    assert client.version()


def test_an_unknown_model_is_permanent_and_says_how_to_pull_it(sims: RunningSims) -> None:
    with pytest.raises(UnknownModel, match="ollama pull"):
        sims.client("qwen").chat(HELLO, model="llama9:70b")


def test_a_busy_503_is_retryable(start_sims: StartSims) -> None:
    sims = start_sims(max_queue=1, tokens_per_s=5.0, time_scale=1.0, model_load_s=0.0)
    client: OllamaClient = sims.client("qwen")
    streaming = threading.Event()
    first = threading.Thread(target=lambda: client.chat(
        HELLO, options={"num_predict": 3}, on_delta=lambda d: streaming.set()))  # fmt: skip
    first.start()
    try:
        assert streaming.wait(10)
        with pytest.raises(RetryableError, match="server busy, please try again"):
            sims.client("qwen").chat(HELLO)
    finally:
        first.join()


def test_an_error_line_mid_stream_is_retryable(start_sims: StartSims) -> None:
    client = start_sims(midstream_error_rate=1.0).client("qwen")
    with pytest.raises(RetryableError, match="an error was encountered while running the model"):
        client.chat(HELLO, options={"num_predict": 10})


def test_keep_alive_zero_unloads_the_model_after_the_answer(sims: RunningSims) -> None:
    client: OllamaClient = sims.client("qwen")
    client.chat(HELLO, options={"num_predict": 2}, keep_alive="10m")
    assert client.loaded() == ["qwen2.5:32b"]
    client.chat(HELLO, options={"num_predict": 2}, keep_alive=0)
    assert client.loaded() == []


def test_the_v1_face_streams_through_the_openai_client(sims: RunningSims) -> None:
    client: OllamaClient = sims.client("qwen")
    result = client.openai().chat(HELLO, max_tokens=5)
    assert result.finish_reason == "length"
    assert result.timings.tokens_out == 5
