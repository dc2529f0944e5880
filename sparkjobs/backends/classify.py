"""Which failures of a model server are worth retrying, and what to tell a person.

Retryable: connection refused, timeouts, a connection cut mid-answer, 408, 429, 5xx
(503 busy included), an error event in the middle of a stream, and a 200 whose WAV is
empty or malformed (`BadAudio`). Permanent: every other 4xx, notably validation
errors, an unknown model (404) and an unknown voice.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from sparkjobs.errors import (
    ModelServerError,
    PermanentError,
    RetryableError,
    ServerUnreachable,
    UnknownModel,
    UnknownVoice,
)

RETRYABLE_STATUSES = frozenset({408, 425, 429, 499})


def error_message(body: bytes | str) -> str:
    """The human message of an error body, whatever its shape.

    Shapes understood: vLLM's nested `{"error": {"message": ...}}` (from 0.10.1 on)
    and its older flat `{"object": "error", "message": ...}`; Ollama's `{"error": "..."}`;
    FastAPI's `{"detail": ...}`; anything else is returned as (shortened) text.
    """
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        data: Any = json.loads(text)
    except ValueError:
        return text.strip()[:500] or "(empty body)"
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and "message" in error:
            return str(error["message"])
        if isinstance(error, str):
            return error
        if "message" in data:
            return str(data["message"])
        if "detail" in data:
            detail = data["detail"]
            return detail if isinstance(detail, str) else json.dumps(detail)
    return text.strip()[:500]


def error_for_status(
    service: str, url: str, status: int, body: bytes, *, known_models: tuple[str, ...] = ()
) -> ModelServerError:
    """The error for a non-2xx answer: retryable for 5xx and throttling, else permanent."""
    message = error_message(body)
    where = f"{service} ({url}) answered {status}: {message}"
    lowered = message.lower()
    if status >= 500 or status in RETRYABLE_STATUSES:
        return RetryableError(f"{where}; the server is failing or busy: the task will retry")
    if status == 404 and ("model" in lowered or not message):
        known = ", ".join(known_models) or "none configured"
        return UnknownModel(
            f"{where}. Fix: use a model the server serves (configured for {service}: "
            f"{known}), or load it on the server (for Ollama: ollama pull <model>)"
        )
    if "voice" in lowered:
        return UnknownVoice(f"{where}. Fix: use a voice the server offers")
    return PermanentError(f"{where}. Fix: correct the request; retrying cannot help")


def error_for_transport(service: str, url: str, exc: httpx.HTTPError) -> RetryableError:
    """The error for a failure below HTTP: refused, timed out, or cut mid-answer."""
    if isinstance(exc, httpx.ConnectError):
        what = "connection refused or unreachable"
        fix = "is the server up (or still loading its model)? `sparkjobs sim` can stand in"
    elif isinstance(exc, httpx.ConnectTimeout):
        what = "connect timed out"
        fix = "check the host and port, or raise timeouts.connect_s"
    elif isinstance(exc, httpx.ReadTimeout):
        what = "no byte arrived within timeouts.first_byte_s"
        fix = "the server hangs or is overloaded; raise timeouts.first_byte_s if it is slow"
    elif isinstance(exc, httpx.TimeoutException):
        what = f"timed out ({type(exc).__name__})"
        fix = "the server is overloaded, or raise the service's timeouts"
    else:
        what = f"the connection failed mid-answer ({type(exc).__name__}: {exc})"
        fix = "the server dropped the request; it will be retried"
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return ServerUnreachable(f"{service} at {url}: {what}; {fix}")
    return RetryableError(f"{service} at {url}: {what}; {fix}")


def midstream_error(service: str, url: str, payload: Any) -> RetryableError:
    """The error for an error event inside a 200 stream (vLLM SSE or Ollama NDJSON)."""
    message = error_message(json.dumps(payload))
    return RetryableError(
        f"{service} ({url}) failed mid-stream after answering 200: {message}; "
        "the request will be retried"
    )
