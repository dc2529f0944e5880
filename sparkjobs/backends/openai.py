"""Client of OpenAI-compatible servers (vLLM, llama.cpp, SGLang, TGI; also Ollama's
/v1): chat and completions.

Streaming follows vLLM's SSE: a role chunk, content chunks (the finish chunk may still
carry text), a usage chunk with `choices: []`, then `data: [DONE]`. Servers that send
no usage chunk (llama-cpp-python) leave the prompt's token count unknown. An error
after the 200 arrives as one `data: {"error": ...}` event. Reasoning text comes as
`reasoning` (newer vLLM) or `reasoning_content` (older); both are read. A model the
server refuses is said together with the models it does serve.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from sparkjobs.backends.classify import (
    describe_html,
    error_for_status,
    looks_like_html,
    midstream_error,
    not_json,
)
from sparkjobs.backends.http import Health, Reply, ServerClient
from sparkjobs.backends.served import ModelList, check_served, fetch_model_list
from sparkjobs.backends.timings import Stopwatch, Timings
from sparkjobs.errors import RetryableError, UnknownModel

Message = Mapping[str, Any]


@dataclass(frozen=True)
class Delta:
    """One streamed piece of an answer."""

    content: str = ""
    reasoning: str = ""


OnDelta = Callable[[Delta], None]


@dataclass(frozen=True)
class TextResult:
    """A whole answer of an LLM, with its timings."""

    text: str
    reasoning: str
    finish_reason: str | None
    model: str
    timings: Timings


class OpenAIClient(ServerClient):
    """Chat and completions against an OpenAI-compatible server (vLLM)."""

    api_prefix = "/v1"

    def health(self) -> Health:
        """`GET /health` (vLLM, SGLang, TGI, llama-server); where it answers 404 or 405
        (llama-cpp-python has none), `GET /v1/models` listing the configured models."""
        try:
            reply = self._http.get("/health")
            if looks_like_html(reply.content):
                page = describe_html(reply.content)
                return Health(False, (f"GET /health answers {reply.status_code} with {page}",))
            if reply.status_code < 400:
                return Health(True)
            if reply.status_code not in (404, 405):
                url = f"{self.base_url}/health"
                error = error_for_status(self.name, url, reply.status_code, reply.content)
                return Health(False, (str(error),))
            listed = fetch_model_list(self._http, "openai")
        except httpx.HTTPError as exc:
            return Health(False, (f"{self.name} ({self.base_url}): {type(exc).__name__}",))
        mismatch = check_served(self.name, self.service, listed)
        if mismatch is not None:
            said = f"GET /health answers {reply.status_code}; {mismatch.detail}"
            return Health(False, (f"{said}; fix: {mismatch.fix}",))
        return Health(True)

    def models(self) -> list[str]:
        """The model ids the server serves (`GET /v1/models`)."""
        data = self.get_json(f"{self.api_prefix}/models")
        return [str(entry["id"]) for entry in data.get("data", [])]

    def chat(
        self,
        messages: Sequence[Message],
        *,
        model: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        stream: bool = True,
        on_delta: OnDelta | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> TextResult:
        """Run one chat completion.

        Args:
            messages: OpenAI chat messages.
            model: default: the service's first configured model.
            max_tokens: the server's default when None.
            temperature: the server's default when None.
            stream: stream the answer (gives a time to first token).
            on_delta: called with each piece as it arrives (streaming only).
            extra: more body fields (e.g. `chat_template_kwargs`), sent as they are.

        Raises:
            RetryableError: refused, timeouts, 5xx, a mid-stream error.
            PermanentError: validation errors; UnknownModel for a 404.
        """
        body = self._body(model, max_tokens, temperature, stream, extra)
        body["messages"] = list(messages)
        return self._generate("/chat/completions", body, stream, on_delta)

    def complete(
        self,
        prompt: str,
        *,
        model: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        stream: bool = True,
        on_delta: OnDelta | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> TextResult:
        """Run one text completion (`/v1/completions`); arguments as for `chat`."""
        body = self._body(model, max_tokens, temperature, stream, extra)
        body["prompt"] = prompt
        return self._generate("/completions", body, stream, on_delta)

    def _body(
        self,
        model: str | None,
        max_tokens: int | None,
        temperature: float | None,
        stream: bool,
        extra: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model_or_default(model), "stream": stream}
        if stream:
            body["stream_options"] = {"include_usage": True}
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        if temperature is not None:
            body["temperature"] = temperature
        body.update(extra or {})
        return body

    def _generate(
        self, path: str, body: dict[str, Any], stream: bool, on_delta: OnDelta | None
    ) -> TextResult:
        watch = Stopwatch(self.clock)
        try:
            with self.request("POST", self.api_prefix + path, body=body) as reply:
                return self._answer(reply, body, stream, watch, on_delta)
        except UnknownModel as exc:
            raise self._unknown_model(str(body["model"]), exc) from exc

    def _answer(
        self,
        reply: Reply,
        body: dict[str, Any],
        stream: bool,
        watch: Stopwatch,
        on_delta: OnDelta | None,
    ) -> TextResult:
        if "text/html" in reply.response.headers.get("content-type", ""):
            raise not_json(f"{self.name} ({self.base_url})", reply.read()[:4096])
        if not stream:
            data = self._json(reply.read())
            choice = (data.get("choices") or [{}])[0]
            delta = _delta_of(choice.get("message") or choice)
            usage = data.get("usage") or {}
            return TextResult(
                delta.content, delta.reasoning, choice.get("finish_reason"),
                str(data.get("model", body["model"])),
                watch.timings(tokens_in=usage.get("prompt_tokens"),
                              tokens_out=usage.get("completion_tokens")),
            )  # fmt: skip
        return self._read_stream(reply, body, watch, on_delta)

    def _unknown_model(self, model: str, refused: UnknownModel) -> UnknownModel:
        """The refusal, with what the server does serve (one GET of its model list)."""
        try:
            listed: ModelList | None = fetch_model_list(self._http, "openai")
        except httpx.HTTPError:
            listed = None
        if listed is None or listed.models is None:
            return refused
        # What the server said, without the generic fix `classify` appended to it.
        said = str(refused).partition(". Fix:")[0]
        if not listed.models:
            fix = "start the server with a model"
        elif model in self.service.models:
            fix = (f"set services.{self.name}.models = {json.dumps(list(listed.models[:3]))} "
                   f"or start the server with --served-model-name {model}")  # fmt: skip
        else:
            fix = f"name a model it serves in the step, e.g. model={listed.models[0]!r}"
        return UnknownModel(f"{said}; the server serves {listed.names} "
                            f"({listed.route}). Fix: {fix}")  # fmt: skip

    def _read_stream(
        self, reply: Reply, body: dict[str, Any], watch: Stopwatch, on_delta: OnDelta | None
    ) -> TextResult:
        text: list[str] = []
        reasoning: list[str] = []
        finish: str | None = None
        usage: Mapping[str, Any] = {}
        pieces = 0
        for event in self._events(reply):
            if "error" in event:
                raise midstream_error(self.name, self.base_url, event)
            usage = event.get("usage") or usage
            for choice in event.get("choices") or []:
                delta = _delta_of(choice.get("delta") or choice)
                if delta.content or delta.reasoning:
                    watch.first()
                    pieces += 1
                    text.append(delta.content)
                    reasoning.append(delta.reasoning)
                    if on_delta is not None:
                        on_delta(delta)
                finish = choice.get("finish_reason") or finish
        return TextResult(
            "".join(text), "".join(reasoning), finish, str(body["model"]),
            watch.timings(tokens_in=usage.get("prompt_tokens"),
                          tokens_out=usage.get("completion_tokens", pieces)),
        )  # fmt: skip

    def _events(self, reply: Reply) -> Iterator[dict[str, Any]]:
        """The JSON events of an SSE body, up to `data: [DONE]`; an `error:` event
        (llama-server's) comes as `{"error": ...}`."""
        data: list[str] = []
        for line in reply.lines():
            if line.startswith("data:"):
                data.append(line[5:].removeprefix(" "))
                continue
            if line.startswith("error:"):  # llama-server's event for a failure mid-stream
                yield {"error": self._json(line[6:].strip().encode())}
                continue
            if line or not data:
                continue  # comments, other fields, or blank lines between events
            payload, data = "\n".join(data), []
            if payload == "[DONE]":
                return
            yield self._json(payload.encode())
        raise RetryableError(
            f"{self.name} ({self.base_url}): the stream ended without `data: [DONE]`; "
            "the server dropped the request"
        )

    def _json(self, raw: bytes) -> dict[str, Any]:
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise not_json(f"{self.name} ({self.base_url})", raw) from exc
        if not isinstance(data, dict):
            raise RetryableError(f"{self.name} ({self.base_url}) sent JSON that is no object")
        return data


def _delta_of(part: Mapping[str, Any]) -> Delta:
    """Content and reasoning of a message, delta or completion choice."""
    content = part.get("content")
    if content is None:
        content = part.get("text")
    reasoning = part.get("reasoning") or part.get("reasoning_content") or ""
    return Delta(str(content or ""), str(reasoning))
