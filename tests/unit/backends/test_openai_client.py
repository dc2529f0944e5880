"""sparkjobs' OpenAI-compatible client against the simulated vLLM: streams, errors, quirks."""

from __future__ import annotations

import threading

import pytest

from sparkjobs.backends import Delta, OpenAIClient
from sparkjobs.config.sections import TimeoutsConfig
from sparkjobs.errors import PermanentError, RetryableError, UnknownModel
from tests.support.sim import RunningSims, StartSims, sim_config

HELLO = [{"role": "user", "content": "Write the morning briefing."}]


def test_a_streamed_chat_records_ttft_tokens_and_speed(sims: RunningSims) -> None:
    client: OpenAIClient = sims.client("gemma")
    deltas: list[Delta] = []
    result = client.chat(HELLO, max_tokens=40, on_delta=deltas.append)
    assert result.text == "".join(d.content for d in deltas)
    assert result.finish_reason == "length"
    timings = result.timings
    assert timings.tokens_out == 40
    assert timings.tokens_in is not None
    assert timings.tokens_in > 0
    assert timings.ttft_ms is not None
    assert timings.ttft_ms <= timings.wall_ms
    assert timings.tokens_per_s is not None
    assert timings.tokens_per_s > 0


def test_streamed_and_whole_answers_carry_the_same_text(sims: RunningSims) -> None:
    client: OpenAIClient = sims.client("gemma")
    streamed = client.chat(HELLO, max_tokens=30)
    whole = client.chat(HELLO, max_tokens=30, stream=False)
    assert streamed.text == whole.text
    assert whole.timings.tokens_out == 30
    assert whole.timings.ttft_ms is None


def test_the_same_seed_and_prompt_give_the_same_text(start_sims: StartSims) -> None:
    first = start_sims(seed=7).client("gemma").chat(HELLO).text
    again = start_sims(seed=7).client("gemma").chat(HELLO).text
    other = start_sims(seed=8).client("gemma").chat(HELLO).text
    assert first == again
    assert first != other


def test_completions_stream_text(sims: RunningSims) -> None:
    result = sims.client("gemma").complete("Once upon a time", max_tokens=12)
    assert result.timings.tokens_out == 12
    assert result.text


@pytest.mark.parametrize("field", ["reasoning", "reasoning_content"])
@pytest.mark.parametrize("stream", [True, False])
def test_reasoning_is_read_under_both_field_names(
    start_sims: StartSims, field: str, stream: bool
) -> None:
    sims = start_sims(reasoning_tokens=5, reasoning_field=field)
    result = sims.client("gemma").chat(HELLO, max_tokens=50, stream=stream)
    assert result.reasoning
    assert result.text
    assert result.reasoning not in result.text


def test_an_unknown_model_is_a_permanent_unknown_model_error(sims: RunningSims) -> None:
    with pytest.raises(UnknownModel, match="gemma-4-26b-a4b"):
        sims.client("gemma").chat(HELLO, model="gemma-5")


@pytest.mark.parametrize("shape", ["nested", "flat"])
def test_a_validation_error_is_permanent_in_both_error_shapes(
    start_sims: StartSims, shape: str
) -> None:
    client = start_sims(error_shape=shape).client("gemma")
    with pytest.raises(PermanentError, match="max_tokens must be at least 1") as caught:
        client.chat(HELLO, max_tokens=0)
    assert not isinstance(caught.value, RetryableError)


def test_a_prompt_longer_than_the_context_is_permanent(sims: RunningSims) -> None:
    with pytest.raises(PermanentError, match="maximum context length"):
        sims.client("gemma").chat([{"role": "user", "content": "x" * 140000}])


def test_a_server_error_is_retryable(start_sims: StartSims) -> None:
    with pytest.raises(RetryableError, match="500"):
        start_sims(error_rate=1.0).client("gemma").chat(HELLO)


def test_an_error_event_mid_stream_is_retryable(start_sims: StartSims) -> None:
    deltas: list[Delta] = []
    client = start_sims(midstream_error_rate=1.0).client("gemma")
    with pytest.raises(RetryableError, match="mid-stream"):
        client.chat(HELLO, max_tokens=20, on_delta=deltas.append)
    assert len(deltas) == 10  # half the answer came before the error


def test_a_refused_connection_is_retryable(start_sims: StartSims) -> None:
    with pytest.raises(RetryableError, match="connection refused"):
        start_sims(refuse=True).client("gemma").chat(HELLO)


def test_a_hanging_server_times_out_at_the_first_byte(start_sims: StartSims) -> None:
    sims = start_sims(hang_rate=1.0)
    client = sims.client("gemma", timeouts=TimeoutsConfig(first_byte_s=0.3))
    with pytest.raises(RetryableError, match="first_byte_s"):
        client.chat(HELLO)


def test_connections_are_refused_while_the_model_loads(start_sims: StartSims) -> None:
    sims = start_sims(config=sim_config(), names=("gemma",), loading_s=100.0)
    client: OpenAIClient = sims.client("gemma")
    assert not client.health().ok
    with pytest.raises(RetryableError, match="connection refused"):
        client.models()
    sims.ready()
    assert client.health().ok
    assert client.models() == ["gemma-4-26b-a4b"]


def test_a_full_queue_answers_503_which_is_retryable(start_sims: StartSims) -> None:
    sims = start_sims(max_queue=1, tokens_per_s=5.0, time_scale=1.0)
    client: OpenAIClient = sims.client("gemma")
    streaming = threading.Event()
    first = threading.Thread(
        target=lambda: client.chat(HELLO, max_tokens=3, on_delta=lambda d: streaming.set())
    )
    first.start()
    try:
        assert streaming.wait(10)
        with pytest.raises(RetryableError, match="503"):
            sims.client("gemma").chat(HELLO, max_tokens=1)
    finally:
        first.join()
