"""sparkjobs' OpenAI-compatible client against every server the simulator plays (vLLM,
llama.cpp's llama-server, llama-cpp-python), and against answers that are no API's."""

from __future__ import annotations

import pytest

from sparkjobs.backends import Delta, OpenAIClient
from sparkjobs.errors import ContextOverflow, PermanentError, RetryableError, UnknownModel
from tests.support.sim import StartSims

HELLO = [{"role": "user", "content": "Write the morning briefing."}]
LIKES = ["vllm", "llama-server", "llama-cpp-python"]


@pytest.mark.parametrize("like", LIKES)
@pytest.mark.parametrize("stream", [True, False])
def test_chat_works_against_each_server(start_sims: StartSims, like: str, stream: bool) -> None:
    client: OpenAIClient = start_sims(like=like).client("gemma")
    deltas: list[Delta] = []
    result = client.chat(HELLO, max_tokens=12, stream=stream, on_delta=deltas.append)
    assert result.text
    assert result.timings.tokens_out == 12
    assert result.text == ("".join(d.content for d in deltas) if stream else result.text)
    assert client.health().ok


def test_without_a_usage_chunk_the_prompt_tokens_are_unknown_and_the_answer_is_counted(
    start_sims: StartSims,
) -> None:
    client: OpenAIClient = start_sims(like="llama-cpp-python").client("gemma")
    result = client.chat(HELLO, max_tokens=9)
    assert result.timings.tokens_in is None  # unknown, not guessed
    assert result.timings.tokens_out == 9  # the pieces streamed
    whole = client.chat(HELLO, max_tokens=9, stream=False)
    assert whole.timings.tokens_in is not None  # a whole answer carries its usage


def test_health_without_a_health_route_is_the_model_list(start_sims: StartSims) -> None:
    sims = start_sims(like="llama-cpp-python", served_models=["gemma-3-270m"])
    health = sims.client("gemma").health()
    assert not health.ok
    assert health.problems[0].startswith("GET /health answers 404; services.gemma.models lists")
    sims.set_faults("gemma", served_models=["gemma-4-26b-a4b"])
    assert sims.client("gemma").health().ok


@pytest.mark.parametrize("like", LIKES)
def test_a_prompt_over_the_context_fails_at_once_with_the_servers_message(
    start_sims: StartSims, like: str
) -> None:
    sims = start_sims(like=like, context_tokens=64)
    with pytest.raises(ContextOverflow, match="context") as caught:
        sims.client("gemma").chat([{"role": "user", "content": "word " * 200}], max_tokens=8)
    assert not isinstance(caught.value, RetryableError)
    assert sims.stats("gemma")["requests"] == 1


def test_llama_servers_error_event_mid_stream_is_read_with_its_message(
    start_sims: StartSims,
) -> None:
    client: OpenAIClient = start_sims(like="llama-server", midstream_error_rate=1.0).client("gemma")
    with pytest.raises(RetryableError, match="mid-stream after answering 200: EngineCore"):
        client.chat(HELLO, max_tokens=10)


def test_a_refused_model_is_said_with_the_models_the_server_serves(start_sims: StartSims) -> None:
    client: OpenAIClient = start_sims(served_models=["gemma-3-270m"]).client("gemma")
    with pytest.raises(UnknownModel) as caught:
        client.chat(HELLO)
    said = str(caught.value)
    assert "answered 404: The model `gemma-4-26b-a4b` does not exist" in said
    assert "the server serves gemma-3-270m (/v1/models)" in said
    assert 'set services.gemma.models = ["gemma-3-270m"]' in said
    with pytest.raises(UnknownModel, match=r"e\.g\. model='gemma-3-270m'"):
        client.chat(HELLO, model="gpt-9")


@pytest.mark.parametrize("stream", [True, False])
def test_a_web_page_where_the_api_should_be_fails_at_once(
    start_sims: StartSims, stream: bool
) -> None:
    client: OpenAIClient = start_sims(html=True).client("gemma")
    with pytest.raises(PermanentError, match=r'an HTML page \("Welcome to nginx!"\)') as caught:
        client.chat(HELLO, stream=stream)
    assert not isinstance(caught.value, RetryableError)
    assert not client.health().ok
