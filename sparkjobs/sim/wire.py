"""The OpenAI wire format as vLLM, llama.cpp and Ollama's /v1 write it: objects,
errors, SSE."""

from __future__ import annotations

import json
import time
from typing import Any

from aiohttp import web

ERROR_TYPES = {400: "BadRequestError", 401: "UnauthorizedError", 404: "NotFoundError",
               500: "InternalServerError", 503: "ServiceUnavailableError"}  # fmt: skip


def dumps(value: Any) -> str:
    """Compact JSON, as pydantic's model_dump_json writes it."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def vllm_error(status: int, message: str, shape: str = "nested") -> dict[str, Any]:
    """vLLM's error body: nested from 0.10.1 on, flat before."""
    info = {"message": message, "type": ERROR_TYPES.get(status, "BadRequestError"),
            "param": None, "code": status}  # fmt: skip
    return {"error": info} if shape == "nested" else {"object": "error", **info}


# llama-server's error types by status (tools/server/utils.hpp: format_error_response).
LLAMA_SERVER_TYPES = {400: "invalid_request_error", 401: "authentication_error",
                      404: "not_found_error", 500: "server_error", 501: "not_supported_error",
                      503: "unavailable_error"}  # fmt: skip


def server_error(
    like: str, status: int, message: str, *, shape: str = "nested", kind: str | None = None
) -> dict[str, Any]:
    """The error body of the server the simulator plays (`kind`: the error's own type,
    e.g. llama-server's `exceed_context_size_error` or OpenAI's code
    `context_length_exceeded`)."""
    if like == "llama-server":
        return {
            "error": {
                "code": status,
                "message": message,
                "type": kind or LLAMA_SERVER_TYPES.get(status, "server_error"),
            }
        }
    if like == "llama-cpp-python":  # OpenAI's shape, the code in `code`
        return {
            "error": {
                "message": message,
                "type": "invalid_request_error" if status < 500 else "internal_server_error",
                "param": None,
                "code": kind,
            }
        }
    return vllm_error(status, message, shape)  # fmt: skip


def ollama_v1_error(status: int, message: str) -> dict[str, Any]:
    """Ollama's /v1 error: the type follows the status, `code` is null."""
    kind = {400: "invalid_request_error", 404: "not_found_error"}.get(status, "api_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def model_list(ids: list[str], owned_by: str, max_model_len: int | None) -> dict[str, Any]:
    """`GET /v1/models` (vLLM's ModelCard fields when max_model_len is given)."""
    created = int(time.time())
    data: list[dict[str, Any]] = []
    for model in ids:
        card: dict[str, Any] = {"id": model, "object": "model", "created": created,
                                "owned_by": owned_by}  # fmt: skip
        if max_model_len is not None:
            card.update(root=model, parent=None, max_model_len=max_model_len, permission=[{
                "id": f"modelperm-{model}", "object": "model_permission", "created": created,
                "allow_create_engine": False, "allow_sampling": True, "allow_logprobs": True,
                "allow_search_indices": False, "allow_view": True, "allow_fine_tuning": False,
                "organization": "*", "group": None, "is_blocking": False,
            }])  # fmt: skip
        data.append(card)
    return {"object": "list", "data": data}


def usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "total_tokens": prompt + completion,
            "completion_tokens": completion}  # fmt: skip


class SseWriter:
    """Writes `data: {json}\\n\\n` events and the closing `data: [DONE]`."""

    def __init__(self, request: web.Request) -> None:
        self._request = request
        self.response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
            }
        )

    async def start(self) -> None:
        await self.response.prepare(self._request)

    async def send(self, event: dict[str, Any], *, field: str = "data") -> None:
        await self.response.write(f"{field}: {dumps(event)}\n\n".encode())

    async def done(self) -> web.StreamResponse:
        await self.response.write(b"data: [DONE]\n\n")
        return await self.end()

    async def end(self) -> web.StreamResponse:
        """End the stream without `[DONE]` (llama-server, after an error event)."""
        await self.response.write_eof()
        return self.response
