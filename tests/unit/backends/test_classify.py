"""Error bodies of every shape, and which failures are retryable."""

from __future__ import annotations

import httpx
import pytest

from sparkjobs.backends.classify import (
    error_for_status,
    error_for_transport,
    error_message,
    midstream_error,
    not_json,
)
from sparkjobs.errors import (
    ContextOverflow,
    PermanentError,
    RetryableError,
    UnknownModel,
    UnknownVoice,
)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"error":{"message":"too long","type":"BadRequestError","param":null,"code":400}}',
         "too long"),
        (b'{"object":"error","message":"too long","type":"BadRequestError","code":400}',
         "too long"),
        (b'{"error":"model \\"x\\" not found, try pulling it first"}',
         'model "x" not found, try pulling it first'),
        (b'{"detail":"Missing input text"}', "Missing input text"),
        (b"Internal Server Error", "Internal Server Error"),
        (b"", "(empty body)"),
    ],
)  # fmt: skip
def test_error_messages_are_read_from_every_shape(body: bytes, message: str) -> None:
    assert error_message(body) == message


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (500, b'{"error":{"message":"engine died"}}', RetryableError),
        (503, b'{"error":"server busy, please try again."}', RetryableError),
        (429, b"slow down", RetryableError),
        (400, b'{"error":{"message":"max_tokens must be at least 1"}}', PermanentError),
        (404, b'{"error":{"message":"The model `x` does not exist."}}', UnknownModel),
        (404, b'{"error":"model \\"x\\" not found, try pulling it first"}', UnknownModel),
        (400, b'{"error":{"message":"Unsupported voice \'bob\'"}}', UnknownVoice),
    ],
)  # fmt: skip
def test_statuses_are_classified(status: int, body: bytes, expected: type[Exception]) -> None:
    error = error_for_status("gemma", "http://127.0.0.1:8002/v1/chat", status, body)
    assert type(error) is expected
    assert str(status) in str(error)


def test_an_unknown_model_error_lists_the_configured_models() -> None:
    error = error_for_status("gemma", "u", 404, b'{"error":{"message":"The model `g` does not '
                             b'exist."}}', known_models=("gemma-4-26b-a4b",))  # fmt: skip
    assert "gemma-4-26b-a4b" in str(error)


@pytest.mark.parametrize(
    "exc",
    [httpx.ConnectError("refused"), httpx.ConnectTimeout("slow"), httpx.ReadTimeout("hang"),
     httpx.RemoteProtocolError("cut")],
)  # fmt: skip
def test_transport_failures_are_retryable(exc: httpx.HTTPError) -> None:
    error = error_for_transport("gemma", "http://127.0.0.1:8002", exc)
    assert isinstance(error, RetryableError)
    assert "gemma" in str(error)


@pytest.mark.parametrize(
    ("status", "body"),
    [
        # vLLM
        (400, b'{"error":{"message":"This model\'s maximum context length is 32768 tokens. '
              b'However, you requested 40000 tokens.","type":"BadRequestError","code":400}}'),
        # llama.cpp llama-server
        (400, b'{"error":{"code":400,"message":"the request exceeds the available context '
              b'size, try increasing it","type":"exceed_context_size_error","n_prompt_tokens":'
              b'1140,"n_ctx":1024}}'),
        # llama-cpp-python: the code beside the message
        (400, b'{"error":{"message":"too long for this model","type":"invalid_request_error",'
              b'"param":"messages","code":"context_length_exceeded"}}'),
        # a server that answers it 500: still not worth a retry
        (500, b'{"error":{"message":"Requested tokens (1500) exceed context window of 1024"}}'),
    ],
)  # fmt: skip
def test_a_prompt_over_the_context_fails_at_once_with_the_servers_message(
    status: int, body: bytes
) -> None:
    error = error_for_status("gemma", "http://127.0.0.1:8002/v1/chat", status, body)
    assert type(error) is ContextOverflow
    assert error_message(body).rstrip(".") in str(error)
    assert "shorten the prompt or lower max_tokens" in str(error)


@pytest.mark.parametrize(
    "body",
    [
        b'{"error":{"message":"The model `x` does not exist","type":"invalid_request_error",'
        b'"param":null,"code":"model_not_found"}}',  # llama-cpp-python answers it 400
        b'{"error":{"message":"Invalid model name passed in model=x"}}',  # LiteLLM
    ],
)  # fmt: skip
def test_a_400_naming_an_unknown_model_is_an_unknown_model(body: bytes) -> None:
    error = error_for_status("gemma", "u", 400, body, known_models=("gemma-4-26b-a4b",))
    assert type(error) is UnknownModel
    assert "gemma-4-26b-a4b" in str(error)


def test_a_400_about_something_else_that_names_the_model_field_is_no_unknown_model() -> None:
    body = b'{"error":{"message":"model: Field required"}}'
    assert type(error_for_status("gemma", "u", 400, body)) is PermanentError


def test_an_html_error_page_is_named_by_its_title() -> None:
    page = (
        b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center>"
        b"<h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body></html>"
    )
    assert error_message(page) == 'an HTML page ("502 Bad Gateway")'
    error = error_for_status("gemma", "u", 502, page)
    assert type(error) is RetryableError
    assert "<" not in str(error)


def test_a_200_that_is_a_web_page_is_permanent_and_one_cut_short_is_retryable() -> None:
    page = b"<!DOCTYPE html><html><head><title>Sign in</title></head><body></body></html>"
    error = not_json("gemma (http://127.0.0.1:8002)", page)
    assert type(error) is PermanentError
    assert 'an HTML page ("Sign in")' in str(error)
    assert "without /v1" in str(error)
    assert type(not_json("gemma (u)", b'{"choices": [{"mess')) is RetryableError


def test_an_error_event_mid_stream_is_retryable_unless_the_answer_outgrew_the_context() -> None:
    engine = midstream_error("gemma", "u", {"error": {"message": "EngineCore died"}})
    assert type(engine) is RetryableError
    said = {"code": 500, "message": "context shift is disabled", "type": "server_error"}
    full = midstream_error("gemma", "u", {"error": said})
    assert type(full) is ContextOverflow
    assert "context shift is disabled" in str(full)
