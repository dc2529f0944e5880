"""Which failures of a model server are worth retrying, and what to tell a person.

Retryable: connection refused, timeouts, a connection cut mid-answer, 408, 429, 5xx
(503 busy included), an error event in the middle of a stream, and a 200 whose WAV is
empty or malformed (`BadAudio`). Permanent: every other 4xx, notably validation
errors, an unknown model (404, or a 400 naming the model) and an unknown voice; a
prompt longer than the server's context, whatever the status and wherever it comes
(some servers answer it 500, or mid-stream); and a 200 that is an HTML page, not the
JSON of an API.
"""

from __future__ import annotations

import html
import json
import re
from typing import Any

import httpx

from sparkjobs.errors import (
    ContextOverflow,
    ModelServerError,
    PermanentError,
    RetryableError,
    ServerUnreachable,
    UnknownModel,
    UnknownVoice,
)

RETRYABLE_STATUSES = frozenset({408, 425, 429, 499})
# How servers word a prompt that does not fit: vLLM and llama-cpp-python ("This
# model's maximum context length is N tokens", code context_length_exceeded),
# llama.cpp's llama-server ("the request exceeds the available context size", type
# exceed_context_size_error; "context shift is disabled" when the answer runs out),
# SGLang ("longer than the model's context length"), TGI ("`inputs` tokens +
# `max_new_tokens` must be <= N"), llama-cpp-python's raw "exceed context window".
CONTEXT_OVERFLOW = re.compile(
    r"maximum context length|context_length_exceeded|exceed_context_size"
    r"|exceeds? the available context size|longer than the model's context length"
    r"|exceeds? context window|context shift is disabled"
    r"|`inputs` tokens \+ `max_new_tokens` must be",
    re.IGNORECASE,
)
# A model the server does not know: vLLM and OpenAI ("The model `x` does not exist",
# code model_not_found), Ollama ('model "x" not found'), LiteLLM ("Invalid model
# name"), LM Studio ("Model 'x' not found").
UNKNOWN_MODEL = re.compile(
    r"model_not_found|unknown model|no such model|invalid model"
    r"|model\b[^.]*?\b(?:does not exist|not found|is not (?:served|available|loaded))",
    re.IGNORECASE,
)
_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)


def looks_like_html(body: bytes | str) -> bool:
    """Whether a body is a web page (a proxy's or web server's), not an API's answer."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    head = text.lstrip()[:200].lower()
    return head.startswith(("<!doctype html", "<html", "<head", "<body")) or (
        head.startswith("<") and "<title" in text[:2000].lower()
    )


def describe_html(body: bytes | str) -> str:
    """`an HTML page ("502 Bad Gateway")`: a web page named by its title, if it has one."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    found = _TITLE.search(text)
    title = " ".join(html.unescape(found.group(1)).split())[:80] if found else ""
    return f'an HTML page ("{title}")' if title else "an HTML page"


def error_message(body: bytes | str) -> str:
    """The human message of an error body, whatever its shape.

    Shapes understood: vLLM's nested `{"error": {"message": ...}}` (from 0.10.1 on,
    also llama.cpp's and OpenAI's) and its older flat `{"object": "error", "message":
    ...}`; Ollama's `{"error": "..."}`; FastAPI's `{"detail": ...}`; an HTML page by its
    title; anything else is returned as (shortened) text.
    """
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        data: Any = json.loads(text)
    except ValueError:
        plain = text.strip()[:500] or "(empty body)"
        return describe_html(text) if looks_like_html(text) else plain
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
    # The sentences below follow the server's, so its closing full stop goes.
    where = f"{service} ({url}) answered {status}: {message.rstrip().removesuffix('.')}"
    # The whole body is searched: codes such as context_length_exceeded sit beside
    # the message, not in it.
    searched = message if looks_like_html(body) else body.decode("utf-8", "replace")
    lowered = message.lower()
    if CONTEXT_OVERFLOW.search(searched):
        return context_overflow(where)
    if status >= 500 or status in RETRYABLE_STATUSES:
        return RetryableError(f"{where}; the server is failing or busy: the task will retry")
    if (status in (400, 404) and UNKNOWN_MODEL.search(searched)) or (
        status == 404 and ("model" in lowered or not message)
    ):
        known = ", ".join(known_models) or "none configured"
        return UnknownModel(
            f"{where}. Fix: use a model the server serves (configured for {service}: "
            f"{known}), or load it on the server (for Ollama: ollama pull <model>)"
        )
    if "voice" in lowered:
        return UnknownVoice(f"{where}. Fix: use a voice the server offers")
    return PermanentError(f"{where}. Fix: correct the request; retrying cannot help")


def context_overflow(where: str) -> ContextOverflow:
    """The error for a prompt (with its max_tokens) that the server's context cannot hold."""
    return ContextOverflow(
        f"{where}. The prompt and max_tokens do not fit the server's context window; "
        "retrying cannot help. Fix: shorten the prompt or lower max_tokens, or serve the "
        "model with a longer context"
    )


def not_json(where: str, body: bytes) -> ModelServerError:
    """The error for a 2xx whose body is not the JSON its route promises: permanent for
    a web page (the URL reaches a web server or proxy, not the API), else retryable (a
    body cut short)."""
    if looks_like_html(body):
        return PermanentError(
            f"{where} answered 200 with {describe_html(body)}, not JSON: no OpenAI-"
            "compatible API answers there. Fix: point the service's url at the model "
            "server's root (e.g. http://host:8000, without /v1)"
        )
    return RetryableError(f"{where} sent a body that is not JSON: {body[:80]!r}")


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


def midstream_error(service: str, url: str, payload: Any) -> ModelServerError:
    """The error for an error event inside a 200 stream (vLLM SSE or Ollama NDJSON):
    retryable, unless it says the answer outgrew the context."""
    raw = json.dumps(payload)
    message = error_message(raw).rstrip().removesuffix(".")
    where = f"{service} ({url}) failed mid-stream after answering 200: {message}"
    if CONTEXT_OVERFLOW.search(raw):
        return context_overflow(where)
    return RetryableError(f"{where}; the request will be retried")
