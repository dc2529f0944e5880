"""Error bodies of every shape, and which failures are retryable."""

from __future__ import annotations

import httpx
import pytest

from sparkjobs.backends.classify import error_for_status, error_for_transport, error_message
from sparkjobs.errors import PermanentError, RetryableError, UnknownModel, UnknownVoice


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
