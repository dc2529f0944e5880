"""The official `openai` and `ollama` Python clients run unchanged against the simulators."""

from __future__ import annotations

from collections.abc import Iterator

import ollama
import openai
import pytest

from sparkjobs.backends.audio import parse_wav
from tests.support.sim import RunningSims

HELLO = [{"role": "user", "content": "Good morning"}]


@pytest.fixture
def vllm(sims: RunningSims) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=sims.url("gemma") + "/v1", api_key="unused") as client:
        yield client


@pytest.fixture
def ollama_client(sims: RunningSims) -> Iterator[ollama.Client]:
    client = ollama.Client(host=sims.url("qwen"))
    yield client
    client.close()


def test_openai_lists_the_models(vllm: openai.OpenAI) -> None:
    assert [model.id for model in vllm.models.list()] == ["gemma-4-26b-a4b"]


def test_openai_chats(vllm: openai.OpenAI) -> None:
    reply = vllm.chat.completions.create(model="gemma-4-26b-a4b", messages=HELLO, max_tokens=7)
    assert reply.choices[0].message.content
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage is not None
    assert reply.usage.completion_tokens == 7


def test_openai_streams_a_chat_with_usage(vllm: openai.OpenAI) -> None:
    stream = vllm.chat.completions.create(
        model="gemma-4-26b-a4b", messages=HELLO, max_tokens=6, stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    texts = [c.choices[0].delta.content for c in chunks if c.choices]
    assert len([t for t in texts if t]) == 6
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 6


def test_openai_sees_an_unknown_model_as_not_found(vllm: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        vllm.chat.completions.create(model="gpt-9", messages=HELLO)


def test_openai_gets_speech_from_orpheus(sims: RunningSims) -> None:
    with openai.OpenAI(base_url=sims.url("orpheus") + "/v1", api_key="unused") as client:
        speech = client.audio.speech.create(
            model="orpheus", voice="tara", input="Hello <sigh> world.", response_format="wav"
        )
    info = parse_wav(speech.content)
    assert (info.sample_rate, info.channels) == (24000, 1)
    assert info.frames > 0


def test_ollama_lists_the_models(ollama_client: ollama.Client) -> None:
    assert [m.model for m in ollama_client.list().models] == ["qwen2.5:32b"]


def test_ollama_chats(ollama_client: ollama.Client) -> None:
    reply = ollama_client.chat(model="qwen2.5:32b", messages=HELLO, options={"num_predict": 5})
    assert reply.message.content
    assert reply.done
    assert reply.eval_count == 5
    assert reply.eval_duration is not None
    assert reply.eval_duration > 0


def test_ollama_generates_streaming(ollama_client: ollama.Client) -> None:
    parts = list(ollama_client.generate(model="qwen2.5:32b", prompt="Hi", stream=True,
                                        options={"num_predict": 4}))  # fmt: skip
    assert [p.done for p in parts] == [False] * 4 + [True]
    assert parts[-1].done_reason == "length"
    assert "".join(p.response for p in parts)


def test_ollama_sees_the_404_of_a_model_not_pulled(ollama_client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError, match="try pulling it first") as caught:
        ollama_client.chat(model="llama9", messages=HELLO)
    assert caught.value.status_code == 404


def test_ollama_lists_loaded_models(ollama_client: ollama.Client) -> None:
    ollama_client.generate(model="qwen2.5:32b", prompt="Hi", options={"num_predict": 1})
    assert [m.model for m in ollama_client.ps().models] == ["qwen2.5:32b"]
